"""What Turnout sends upstream is canonical (reliability.md b1, S1, S2, S3).

Raw-socket recording upstreams (asyncio servers on the session's ``bg`` loop) keep the
exact bytes of every request they receive and parse them with a deliberately strict
reader: CRLF line ends only, ``name: value`` fields, and exactly the framing the head
announces. One Turnout process serves the module:

* ``/`` → backend ``main``, ``/a`` → ``a``, ``/admin`` → ``admin`` (path prefixes);
* host ``b.example`` → ``hostb`` (exact-hostname route).

Every test sends raw bytes to the gateway with a unique ``x-probe`` header, then looks
the request up on whichever upstream got it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from turnout.testing import BackgroundLoop, TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.rawhttp import RawResponse, exchange, parse_responses

IO_TIMEOUT = 5.0
TOKEN = re.compile(rb"[!#$%&'*+.^`|~0-9a-z-]+")  # lowercase tchar: names are lowered
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-authorization",
    b"http2-settings",
    b"expect",
}


# -- recording upstream -------------------------------------------------------------------


class NotCanonical(Exception):
    pass


@dataclass
class Recorded:
    upstream: str
    raw: bytes  # every byte of this request as it arrived
    request_line: bytes
    lines: list[bytes]  # raw header lines, without CRLF
    headers: list[tuple[bytes, bytes]]  # (name as sent, value)
    body: bytes  # payload (de-chunked)
    chunked: bool
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def target(self) -> bytes:
        return self.request_line.split(b" ")[1]

    def all(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name]

    def one(self, name: bytes) -> bytes:
        values = self.all(name)
        assert len(values) == 1, f"{name!r} sent {len(values)} times: {self.raw[:600]!r}"
        return values[0]

    def names(self) -> set[bytes]:
        return {n.lower() for n, _ in self.headers}


class RecordingUpstream:
    """Records each request's exact bytes and answers 200 with a Content-Length."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> RecordingUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # clean close between requests
                rec = await self._read_request(head, reader)
                self.requests.append(rec)
                body = b"%s %d" % (self.name.encode(), len(self.requests))
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except NotCanonical as exc:
            self.violations.append(str(exc))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            self.violations.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    async def _read_request(self, head: bytes, reader: asyncio.StreamReader) -> Recorded:
        raw = bytearray(head)
        text = head[:-4]
        if b"\n" in text.replace(b"\r\n", b"") or b"\r" in text.replace(b"\r\n", b""):
            raise NotCanonical(f"bare CR or LF in the head: {head!r}")
        request_line, *lines = text.split(b"\r\n")
        headers: list[tuple[bytes, bytes]] = []
        for line in lines:
            name, sep, value = line.partition(b": ")
            if not sep or not TOKEN.fullmatch(name.lower()) or value != value.strip(b" \t"):
                raise NotCanonical(f"not a 'name: value' line: {line!r}")
            headers.append((name, value))
        rec = Recorded(self.name, b"", request_line, lines, headers, b"", False)
        te, cl = rec.all(b"transfer-encoding"), rec.all(b"content-length")
        if te and cl:
            raise NotCanonical(f"both framings: {head!r}")
        if te:
            if te != [b"chunked"]:
                raise NotCanonical(f"transfer-encoding {te!r}")
            rec.chunked = True
            body = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                raw += size_line
                if not re.fullmatch(rb"[0-9a-f]+\r\n", size_line) or (
                    len(size_line) > 3 and size_line.startswith(b"0")
                ):
                    raise NotCanonical(f"chunk size line {size_line!r}")
                size = int(size_line[:-2], 16)
                if size == 0:
                    break
                data = await reader.readexactly(size + 2)
                raw += data
                if not data.endswith(b"\r\n"):
                    raise NotCanonical("chunk data not followed by CRLF")
                body += data[:-2]
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                raw += line
                name, _, value = line[:-2].partition(b": ")
                rec.trailers.append((name, value))
            raw += b"\r\n"
            rec.body = bytes(body)
        elif cl:
            if len(cl) != 1 or not cl[0].isdigit() or (len(cl[0]) > 1 and cl[0][:1] == b"0"):
                raise NotCanonical(f"content-length {cl!r}")
            rec.body = await reader.readexactly(int(cl[0]))
            raw += rec.body
        rec.raw = bytes(raw)
        return rec

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


# -- the gateway under test -------------------------------------------------------------------


@dataclass
class Setup:
    port: int
    upstreams: dict[str, RecordingUpstream]
    proc: TurnoutProcess
    probes: int = 0

    def probe_id(self) -> str:
        self.probes += 1
        return f"p{self.probes}"

    def find(self, probe: str) -> Recorded:
        found = [
            rec
            for up in self.upstreams.values()
            for rec in up.requests
            if probe.encode() in rec.all(b"x-probe")
        ]
        assert len(found) == 1, f"probe {probe} reached upstreams {len(found)} times"
        return found[0]


@pytest.fixture(scope="module")
def setup(bg: BackgroundLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Module-scoped ``serve``: four recording upstreams and one ready Turnout process."""
    ups = {
        name: bg.run(RecordingUpstream(name).start()) for name in ("main", "a", "admin", "hostb")
    }
    port = free_port()
    conf = tmp_path_factory.mktemp("canonical") / "conf"
    conf.mkdir()
    (conf / "gateway.yaml").write_text(
        dump(
            gateway("gw", port),
            *(backend(name, up.port) for name, up in ups.items()),
            route("paths", [to("main", "/"), to("a", "/a"), to("admin", "/admin")]),
            route("byhost", [to("hostb", "/")], hostnames=["b.example"]),
        )
    )
    proc = TurnoutProcess(conf, workers=1)
    try:
        proc.start()
        yield Setup(port, ups, proc)
    finally:
        proc.stop()
        for up in ups.values():
            bg.call(up.close)
    for up in ups.values():
        assert not up.violations, f"{up.name}: {up.violations}"


def send(s: Setup, request: bytes) -> RawResponse:
    data, _ = exchange(s.port, request, timeout=IO_TIMEOUT, read_until_close=False)
    responses = parse_responses(data)
    assert responses and responses[0].complete, f"no complete response: {data[:300]!r}"
    return responses[0]


def forward(s: Setup, head: str, body: bytes = b"", expect: str | None = None) -> Recorded:
    """Send ``head`` (CRLF added per line; an x-probe header is appended) and return what
    the upstream recorded. ``head`` lines are separated by ``|``."""
    probe = s.probe_id()
    lines = [*head.split("|"), f"X-Probe: {probe}"]
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    resp = send(s, wire)
    assert resp.status == 200, f"{resp.status}: {resp.body[:200]!r}"
    rec = s.find(probe)
    for up in s.upstreams.values():
        assert not up.violations, f"{up.name} got non-canonical bytes: {up.violations}"
    if expect is not None:
        assert rec.upstream == expect, f"routed to {rec.upstream}, expected {expect}"
        assert resp.body.startswith(expect.encode() + b" "), "response from another upstream"
    assert_canonical(rec)
    return rec


def assert_canonical(rec: Recorded) -> None:
    method, target, version = rec.request_line.split(b" ")
    assert method.isalpha() and method.isupper(), rec.request_line
    assert version == b"HTTP/1.1", rec.request_line
    assert target.startswith(b"/"), f"not origin-form: {rec.request_line!r}"
    assert b"#" not in target
    assert len(rec.all(b"host")) == 1
    for name, value in rec.headers:
        assert name == name.lower(), f"header name not lowercased: {name!r}"
        assert b"_" not in name, f"underscore header forwarded: {name!r}"
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value), f"CTL in {name!r}"
    framing = [n for n in rec.names() if n in (b"content-length", b"transfer-encoding")]
    assert len(framing) <= 1
    assert len(rec.all(b"content-length")) <= 1 and len(rec.all(b"transfer-encoding")) <= 1
    websocket = rec.all(b"upgrade") == [b"websocket"]
    leaked = rec.names() & HOP_BY_HOP
    if websocket:
        assert rec.all(b"connection") == [b"upgrade"], rec.raw[:400]
        leaked -= {b"connection", b"upgrade"}
    assert not leaked, f"hop-by-hop headers forwarded: {sorted(leaked)}"
    for name in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"):
        assert len(rec.all(name)) == 1, f"{name!r} must be set exactly once"


# -- framing ------------------------------------------------------------------------------------


def test_content_length_body_has_exactly_one_content_length(setup: Setup) -> None:
    rec = forward(
        setup, "POST /main/cl HTTP/1.1|Host: h.example|Content-Length: 0011", b"hello world"
    )
    assert rec.one(b"content-length") == b"11"
    assert rec.all(b"transfer-encoding") == []
    assert rec.body == b"hello world"
    assert rec.raw.endswith(b"\r\n\r\nhello world")


def test_chunked_body_is_rechunked(setup: Setup) -> None:
    body = b'3;ext=1\r\nabc\r\nA;x="q"\r\n0123456789\r\n000\r\nX-Trailer: t\r\n\r\n'
    # ",chunked" was accepted here too until issue 20 (item 4): an empty list element is now
    # refused (tests/integration/data/hostile_http1.yaml, te-empty-list-element).
    for te in ("chunked", "CHUNKED", "chunked "):
        rec = forward(
            setup, f"POST /main/chunked HTTP/1.1|Host: h.example|Transfer-Encoding: {te}", body
        )
        assert rec.chunked
        assert rec.one(b"transfer-encoding") == b"chunked"
        assert rec.all(b"content-length") == []
        assert rec.body == b"abc0123456789"
        assert b"ext=" not in rec.raw and b'x="q"' not in rec.raw, "chunk extensions forwarded"
        assert rec.trailers == [(b"x-trailer", b"t")]


def test_no_body_means_no_framing_header(setup: Setup) -> None:
    rec = forward(setup, "GET /main/nobody HTTP/1.1|Host: h.example")
    assert rec.all(b"content-length") == [] and rec.all(b"transfer-encoding") == []
    assert rec.body == b""
    rec = forward(setup, "POST /main/empty HTTP/1.1|Host: h.example|Content-Length: 0")
    assert rec.one(b"content-length") == b"0"


def test_get_body_stays_a_body(setup: Setup) -> None:
    inner = b"GET /admin/smuggled HTTP/1.1\r\nHost: h.example\r\n\r\n"
    rec = forward(
        setup,
        f"GET /main/get-body HTTP/1.1|Host: h.example|Content-Length: {len(inner)}",
        inner,
        expect="main",
    )
    assert rec.body == inner
    assert not any(r.target == b"/admin/smuggled" for r in setup.upstreams["admin"].requests)


# -- hop-by-hop and Connection ------------------------------------------------------------------


def test_hop_by_hop_headers_are_not_forwarded(setup: Setup) -> None:
    rec = forward(
        setup,
        "GET /main/hop HTTP/1.1|Host: h.example|Connection: keep-alive|Keep-Alive: timeout=5"
        "|Proxy-Connection: keep-alive|TE: trailers|Trailer: X-T|Upgrade: foo/1"
        "|Proxy-Authorization: Basic Zm9vOmJhcg==|X-Keep: yes",
    )
    assert not (rec.names() & HOP_BY_HOP)
    assert rec.one(b"x-keep") == b"yes"


def test_h2c_upgrade_is_not_forwarded(setup: Setup) -> None:
    rec = forward(
        setup,
        "GET /main/h2c HTTP/1.1|Host: h.example|Connection: Upgrade, HTTP2-Settings"
        "|Upgrade: h2c|HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
    )
    assert not (rec.names() & {b"upgrade", b"http2-settings", b"connection"})


def test_websocket_upgrade_is_forwarded_canonically(setup: Setup) -> None:
    rec = forward(
        setup,
        "GET /main/ws HTTP/1.1|Host: h.example|Connection: keep-alive, Upgrade"
        "|Upgrade: WebSocket|Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
        "|Sec-WebSocket-Version: 13",
    )
    assert rec.one(b"upgrade") == b"websocket"
    assert rec.one(b"connection") == b"upgrade"
    assert rec.one(b"sec-websocket-key") == b"dGhlIHNhbXBsZSBub25jZQ=="


def test_connection_nominated_headers_are_removed(setup: Setup) -> None:
    rec = forward(
        setup,
        "GET /main/nominated HTTP/1.1|Host: h.example|Connection: close, X-Secret"
        "|X-Secret: s3cret|X-Other: o",
    )
    assert rec.all(b"x-secret") == []
    assert rec.one(b"x-other") == b"o"


def test_connection_cannot_remove_gateway_headers(setup: Setup) -> None:
    rec = forward(
        setup,
        "GET /main/protected HTTP/1.1|Host: h.example"
        "|Connection: X-Forwarded-For, X-Request-Id, X-Forwarded-Proto, X-Forwarded-Host"
        "|X-Forwarded-For: 203.0.113.7|X-Request-Id: client-id-1",
    )
    assert rec.one(b"x-forwarded-for") == b"203.0.113.7, 127.0.0.1"
    assert rec.one(b"x-request-id") == b"client-id-1"
    assert rec.one(b"x-forwarded-proto") == b"http"
    assert rec.one(b"x-forwarded-host") == b"h.example"


# -- X-Forwarded-* and x-request-id -----------------------------------------------------------


def test_x_forwarded_for_is_appended(setup: Setup) -> None:
    rec = forward(setup, "GET /main/xff0 HTTP/1.1|Host: h.example")
    assert rec.one(b"x-forwarded-for") == b"127.0.0.1"
    rec = forward(setup, "GET /main/xff1 HTTP/1.1|Host: h.example|X-Forwarded-For: 203.0.113.7")
    assert rec.one(b"x-forwarded-for") == b"203.0.113.7, 127.0.0.1"
    rec = forward(
        setup,
        "GET /main/xff2 HTTP/1.1|Host: h.example|X-Forwarded-For: 203.0.113.7"
        "|X-Forwarded-For: 198.51.100.1, 198.51.100.2",
    )
    assert rec.one(b"x-forwarded-for") == b"203.0.113.7, 198.51.100.1, 198.51.100.2, 127.0.0.1"


def test_x_forwarded_proto_and_host_are_set_by_the_gateway(setup: Setup) -> None:
    rec = forward(
        setup,
        "GET /main/xfp HTTP/1.1|Host: h.example:8080|X-Forwarded-Proto: https"
        "|X-Forwarded-Host: evil.example|X-Forwarded-Proto: wss",
    )
    assert rec.one(b"x-forwarded-proto") == b"http"
    assert rec.one(b"x-forwarded-host") == b"h.example:8080"
    assert rec.one(b"host") == b"h.example:8080"


def test_request_id_is_generated_when_absent(setup: Setup) -> None:
    first = forward(setup, "GET /main/rid1 HTTP/1.1|Host: h.example").one(b"x-request-id")
    second = forward(setup, "GET /main/rid2 HTTP/1.1|Host: h.example").one(b"x-request-id")
    assert UUID.fullmatch(first), first
    assert UUID.fullmatch(second), second
    assert first != second


def test_sane_request_id_is_kept_and_insane_one_replaced(setup: Setup) -> None:
    sane = "0a1b2c3d-trace:42/x"
    rec = forward(setup, f"GET /main/rid-sane HTTP/1.1|Host: h.example|X-Request-Id: {sane}")
    assert rec.one(b"x-request-id") == sane.encode()
    for insane in ("a b c", "x" * 129, "caf\xe9"):
        rec = forward(
            setup, f"GET /main/rid-insane HTTP/1.1|Host: h.example|X-Request-Id: {insane}"
        )
        assert UUID.fullmatch(rec.one(b"x-request-id")), rec.one(b"x-request-id")


def test_underscore_header_names_are_not_forwarded(setup: Setup) -> None:
    rec = forward(
        setup,
        "GET /main/underscore HTTP/1.1|Host: h.example|X_Api_Key: k|Content_Length: 0"
        "|X-Forwarded_For: 10.0.0.1|X-Api-Key: dash",
    )
    assert not any(b"_" in name for name, _ in rec.headers)
    assert rec.one(b"x-api-key") == b"dash"
    assert rec.one(b"x-forwarded-for") == b"127.0.0.1"


# -- request target -----------------------------------------------------------------------------


def test_absolute_form_becomes_origin_form_with_its_authority(setup: Setup) -> None:
    rec = forward(
        setup, "GET http://b.example:8080/p/q?x=1 HTTP/1.1|Host: other.example", expect="hostb"
    )
    assert rec.request_line == b"GET /p/q?x=1 HTTP/1.1"
    assert rec.one(b"host") == b"b.example:8080"
    assert rec.one(b"x-forwarded-host") == b"b.example:8080"
    # The same request with the authority only in Host goes where Host says.
    rec = forward(setup, "GET /p/q?x=1 HTTP/1.1|Host: other.example", expect="main")
    assert rec.one(b"host") == b"other.example"


def test_absolute_form_authority_beats_host_for_routing(setup: Setup) -> None:
    rec = forward(setup, "GET http://other.example/admin HTTP/1.1|Host: b.example", expect="admin")
    assert rec.one(b"host") == b"other.example"


@pytest.mark.parametrize(
    ("target", "path", "backend_name"),
    [
        ("/a/./b/../c", b"/a/c", "a"),
        ("/a/x", b"/a/x", "a"),
        ("/admin", b"/admin", "admin"),
        ("/a/../admin", b"/admin", "admin"),
        ("/a/%2e%2e/admin", b"/admin", "admin"),
        ("/a/%2E%2E/admin/", b"/admin/", "admin"),
        ("/a/.%2e/admin?x=/a", b"/admin?x=/a", "admin"),
        ("//admin//x", b"/admin/x", "admin"),
        ("/%61dmin", b"/admin", "admin"),
        ("/admin/../a", b"/a", "a"),
        ("/a/..%2fadmin", b"/a/..%2Fadmin", "a"),
        ("/adminx", b"/adminx", "main"),
    ],
)
def test_routing_uses_the_forwarded_normalised_path(
    setup: Setup, target: str, path: bytes, backend_name: str
) -> None:
    rec = forward(setup, f"GET {target} HTTP/1.1|Host: h.example", expect=backend_name)
    assert rec.target == path


def test_http10_request_is_forwarded_as_http11(setup: Setup) -> None:
    rec = forward(setup, "GET /main/old HTTP/1.0|Host: h.example")
    assert rec.request_line == b"GET /main/old HTTP/1.1"
    assert rec.one(b"host") == b"h.example"
    rec = forward(setup, "POST /main/old-body HTTP/1.0|Host: h.example|Content-Length: 3", b"abc")
    assert rec.request_line == b"POST /main/old-body HTTP/1.1"
    assert rec.one(b"content-length") == b"3" and rec.body == b"abc"
    rec = forward(setup, "GET /main/old-nohost HTTP/1.0")
    assert rec.request_line == b"GET /main/old-nohost HTTP/1.1"
    assert len(rec.all(b"host")) == 1


def test_pipelined_requests_are_forwarded_one_by_one(setup: Setup) -> None:
    """Two pipelined requests leave as two separately framed, canonical requests."""
    p1, p2 = setup.probe_id(), setup.probe_id()
    wire = (
        f"POST /main/pipe1 HTTP/1.1\r\nHost: h.example\r\nX-Probe: {p1}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        f"POST /main/pipe2 HTTP/1.1\r\nHost: h.example\r\nX-Probe: {p2}\r\n"
        "Content-Length: 2\r\n\r\nde"
    ).encode()
    data, _ = exchange(setup.port, wire, timeout=IO_TIMEOUT, read_until_close=False, expect=2)
    assert [r.status for r in parse_responses(data)] == [200, 200]
    first, second = setup.find(p1), setup.find(p2)
    assert_canonical(first)
    assert_canonical(second)
    assert first.body == b"abc" and first.chunked
    assert second.body == b"de" and second.one(b"content-length") == b"2"


# -- the oracle itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 03\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3;e=1\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nx-a : b\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nx-a:b\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\nx-a: b\r\n\r\n",
    ],
    ids=["cl-and-te", "te-list", "cl-leading-zero", "chunk-ext", "space-colon", "no-sp", "bare-lf"],
)
def test_recording_upstream_flags_non_canonical_bytes(bg: BackgroundLoop, wire: bytes) -> None:
    """The strict reader that judges Turnout's output does catch what it must."""
    up = bg.run(RecordingUpstream("oracle").start())
    try:
        data, _ = exchange(up.port, wire, timeout=IO_TIMEOUT)
        assert up.violations, f"accepted {wire!r}"
        assert up.requests == [] and data == b""
    finally:
        bg.call(up.close)
