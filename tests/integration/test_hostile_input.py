"""Hostile HTTP/1.x input against a real gateway process (reliability.md b1, S0, S2).

One Turnout process with small limits serves the whole module, in front of one real
echo upstream. Every vector of ``data/hostile_http1.yaml`` is sent on a fresh raw
connection, then checked three ways:

1. the client sees exactly the expected responses (or a close without one), and the
   server closes the connection by itself after any 4xx/5xx;
2. a canary request on a NEW connection gets the echo's normal 200 for its own path,
   so neither the gateway nor its pooled upstream connection was desynchronised;
3. the echo received exactly the request-targets the vector intends, in order: a
   smuggled request (``/smuggled``) or any request the gateway did not answer shows
   up there.

Around the corpus: a 1 MiB header value sent in pieces, a slow request head (408 or
close within header-timeout + 2 s), and 200 idle partial heads that must not stop a
normal request from being served.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from turnout.samples.echo import EchoIdentity, EchoState, start_echo
from turnout.testing import BackgroundLoop, TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.rawhttp import RawResponse, exchange, parse_responses

DATA = Path(__file__).parent / "data" / "hostile_http1.yaml"
HEADER_TIMEOUT = 2.0
LIMIT_ARGS = [
    "--max-url-bytes",
    "1k",
    "--max-header-bytes",
    "4k",
    "--max-headers",
    "20",
    "--max-body-bytes",
    "64k",
    "--header-timeout",
    f"{HEADER_TIMEOUT:g}s",
    # Vectors that leave an exchange hanging must not slow the module teardown.
    "--drain-timeout",
    "2s",
]
IO_TIMEOUT = 5.0  # generous bound for "the server answers / closes"


# -- corpus -------------------------------------------------------------------------------

_MACRO = re.compile(r"\{\{([A-Z0-9_]+)(?:\*(\d+))?\}\}")


def _expand(text: str, macros: dict[str, str]) -> str:
    for _ in range(8):
        new = _MACRO.sub(lambda m: macros[m.group(1)] * int(m.group(2) or 1), text)
        if new == text:
            return new
        text = new
    raise ValueError(f"macro expansion does not terminate: {text[:80]!r}")


@dataclass(frozen=True)
class Vector:
    name: str
    request: bytes
    statuses: tuple[int, ...]  # () means: closed without any response
    upstream: tuple[str, ...] = ()
    half_close: bool = False
    error_ok: bool = False
    absent_headers: tuple[str, ...] = ()
    xfail: str | None = None
    ref: str = ""

    @property
    def ends_in_error(self) -> bool:
        return not self.statuses or self.statuses[-1] >= 400


def load_corpus(path: Path = DATA) -> list[Vector]:
    doc = yaml.safe_load(path.read_text())
    macros: dict[str, str] = doc["macros"]
    vectors = []
    for raw in doc["vectors"]:
        status = raw["status"]
        if status == "close":
            statuses: tuple[int, ...] = ()
        elif isinstance(status, int):
            statuses = (status,)
        else:
            statuses = tuple(int(s) for s in status)
        vectors.append(
            Vector(
                name=raw["name"],
                request=_expand(raw["request"], macros).encode("latin-1"),
                statuses=statuses,
                upstream=tuple(_expand(u, macros) for u in raw.get("upstream", [])),
                half_close=bool(raw.get("half_close", False)),
                error_ok=bool(raw.get("error_ok", False)),
                absent_headers=tuple(h.lower() for h in raw.get("absent_headers", [])),
                xfail=raw.get("xfail"),
                ref=raw.get("ref", ""),
            )
        )
    return vectors


CORPUS = load_corpus()


def _params() -> list[Any]:
    out = []
    for v in CORPUS:
        marks = [pytest.mark.xfail(strict=True, reason=v.xfail)] if v.xfail else []
        out.append(pytest.param(v, id=v.name, marks=marks))
    return out


# -- the gateway under test (one process per module) ----------------------------------------


@dataclass
class Gateway:
    port: int
    echo: EchoState
    proc: TurnoutProcess
    canaries: int = field(default=0)


@pytest.fixture(scope="module")
def gw(bg: BackgroundLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Module-scoped ``serve``: one echo upstream and one ready Turnout process."""
    server, state = bg.run(
        start_echo(identity=EchoIdentity("default", "hostile-echo-0", "hostile-echo"))
    )
    port = free_port()
    conf = tmp_path_factory.mktemp("hostile") / "conf"
    conf.mkdir()
    (conf / "gateway.yaml").write_text(
        dump(gateway("gw", port), backend("echo", state.port), route("r", [to("echo")]))
    )
    proc = TurnoutProcess(conf, workers=1, extra_args=LIMIT_ARGS)
    try:
        proc.start()
        yield Gateway(port, state, proc)
    finally:
        proc.stop()
        bg.call(server.close)


# -- raw conversation ---------------------------------------------------------------------


@dataclass
class Conversation:
    data: bytes
    closed_by_server: bool  # the server closed before the client sent its FIN
    closed: bool  # the connection ended (by the server, possibly after our FIN)
    responses: list[RawResponse]


def _read_some(sock: socket.socket, deadline: float) -> bytes | None:
    """One recv; b"" on EOF/reset, None on timeout."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return b""


def converse(
    port: int, request: bytes, want: int, half_close: bool = False, wait_close: bool = False
) -> Conversation:
    """Send ``request``; read ``want`` complete responses (or until the server closes).

    With ``wait_close`` keep reading until the server closes by itself. Otherwise, once
    the expected responses are in, half-close and read until the server closes: a server
    that was still working on bytes nobody expected (a hidden pipelined request) has to
    finish or drop it before closing, so the outcome never depends on timing.
    """
    chunks: list[bytes] = []
    closed_by_server = False
    fin_sent = False
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused early; its answer may still be readable
        if half_close:
            _shutdown(sock)
            fin_sent = True
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            complete = [r for r in parse_responses(b"".join(chunks)) if r.complete]
            # A success where an error was expected has already failed: do not wait.
            if len(complete) >= want and (not wait_close or complete[-1].status < 400):
                break
            chunk = _read_some(sock, deadline)
            if chunk is None:
                if fin_sent:  # nothing more will make the server close
                    data = b"".join(chunks)
                    return Conversation(data, False, False, parse_responses(data))
                break
            if not chunk:
                closed_by_server = not fin_sent
                return Conversation(
                    b"".join(chunks), closed_by_server, True, parse_responses(b"".join(chunks))
                )
            chunks.append(chunk)
        closed = False
        if not fin_sent:
            _shutdown(sock)
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            chunk = _read_some(sock, deadline)
            if chunk is None:
                break
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    return Conversation(data, closed_by_server, closed, parse_responses(data))


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def echo_doc(resp: RawResponse) -> dict[str, Any]:
    return dict(json.loads(resp.body))


def assert_canary(gw: Gateway, name: str) -> str:
    """A normal request on a new connection reaches the echo and gets its own answer."""
    gw.canaries += 1
    path = f"/canary/{name}/{gw.canaries}"
    data, closed = exchange(
        gw.port,
        f"GET {path} HTTP/1.1\r\nHost: canary.test\r\nConnection: close\r\n\r\n".encode(),
        timeout=IO_TIMEOUT,
    )
    responses = parse_responses(data)
    assert [r.status for r in responses] == [200], f"canary after {name}: {data[:300]!r}"
    assert responses[0].complete
    assert echo_doc(responses[0])["path"] == path, "canary got another request's response"
    assert closed, "Connection: close was not honoured for the canary"
    return path


# -- the corpus -----------------------------------------------------------------------------


def test_corpus_is_large_and_well_formed() -> None:
    names = [v.name for v in CORPUS]
    assert len(CORPUS) >= 60
    assert len(set(names)) == len(names), "duplicate vector names"
    for v in CORPUS:
        assert re.fullmatch(r"[a-z0-9-]+", v.name), v.name
        assert v.request, v.name
        assert v.ref, f"{v.name}: say where the vector comes from"
        assert "/smuggled" not in v.upstream, v.name


@pytest.mark.parametrize("vector", _params())
def test_hostile_vector(gw: Gateway, vector: Vector) -> None:
    before = len(gw.echo.received)
    conv = converse(
        gw.port,
        vector.request,
        want=max(len(vector.statuses), 1),
        half_close=vector.half_close,
        wait_close=vector.ends_in_error,
    )
    got = [r.status for r in conv.responses]

    if vector.statuses:
        assert got == list(vector.statuses), f"responses: {conv.data[:400]!r}"
        assert all(r.complete for r in conv.responses), f"truncated: {conv.data[:400]!r}"
    elif vector.error_ok and len(got) == 1:
        assert 400 <= got[0] < 500, f"responses: {conv.data[:400]!r}"
    else:
        assert conv.data == b"", "expected a close without any response"

    if vector.ends_in_error:
        if vector.half_close:
            assert conv.closed, "the server kept the connection open"
        else:
            assert conv.closed_by_server, "the server kept the connection open after an error"
    else:
        assert conv.closed, "the server did not close after the client's FIN"

    for resp in conv.responses:
        if resp.status == 200:
            doc = echo_doc(resp)
            seen = {name.lower() for name in doc["headers"]}
            leaked = seen & set(vector.absent_headers)
            assert not leaked, f"the upstream saw {sorted(leaked)}"

    canary = assert_canary(gw, vector.name)
    assert gw.echo.received[before:] == [*vector.upstream, canary]


# -- streamed and slow inputs ----------------------------------------------------------------


def test_one_mib_header_value_sent_in_pieces(gw: Gateway) -> None:
    """llhttp buffers a partial value without bound; Turnout must cut it off (431)."""
    before = len(gw.echo.received)
    piece = b"v" * 16384
    sent = 0
    chunks: list[bytes] = []
    closed = False
    with socket.create_connection(("127.0.0.1", gw.port), timeout=IO_TIMEOUT) as sock:
        try:
            sock.sendall(b"GET /big-header HTTP/1.1\r\nHost: a\r\nX-Big: ")
            while sent < 1 << 20:
                sock.sendall(piece)
                sent += len(piece)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + IO_TIMEOUT
        while (chunk := _read_some(sock, deadline)) is not None:
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
    responses = parse_responses(b"".join(chunks))
    assert [r.status for r in responses] == [431]
    assert closed
    canary = assert_canary(gw, "one-mib-header")
    assert gw.echo.received[before:] == [canary]


def test_oversized_chunked_body_streamed_is_cut_off(gw: Gateway) -> None:
    """A chunked body is forwarded as it arrives; past the limit the client gets 413 and
    the upstream never sees a complete request."""
    before = len(gw.echo.received)
    chunks: list[bytes] = []
    closed = False
    with socket.create_connection(("127.0.0.1", gw.port), timeout=IO_TIMEOUT) as sock:
        try:
            sock.sendall(
                b"POST /streamed HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(64):  # 64 x 16 KiB = 1 MiB against a 64 KiB limit
                sock.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + IO_TIMEOUT
        while (chunk := _read_some(sock, deadline)) is not None:
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
    responses = parse_responses(b"".join(chunks))
    assert [r.status for r in responses] == [413]
    assert closed
    canary = assert_canary(gw, "streamed-body")
    assert gw.echo.received[before:] == [canary]


def _wait_closed(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    while (chunk := _read_some(sock, deadline)) is not None:
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
    return b"".join(chunks), False


def test_slow_request_head_times_out(gw: Gateway) -> None:
    bound = HEADER_TIMEOUT + 2.0
    with socket.create_connection(("127.0.0.1", gw.port), timeout=IO_TIMEOUT) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: 1")
        data, closed = _wait_closed(sock, started + bound + 5.0)
        elapsed = time.monotonic() - started
    assert closed, "the gateway kept a partial request head open"
    assert elapsed <= bound, f"closed after {elapsed:.2f}s, bound {bound:.1f}s"
    statuses = [r.status for r in parse_responses(data)]
    assert statuses in ([], [408]), f"unexpected answer {data[:200]!r}"
    assert_canary(gw, "slow-head")


def test_trickled_request_head_times_out(gw: Gateway) -> None:
    """Slowloris: a byte every 0.5 s does not reset the header timer."""
    bound = HEADER_TIMEOUT + 2.0
    head = b"GET /trickle HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"z" * 40
    with socket.create_connection(("127.0.0.1", gw.port), timeout=IO_TIMEOUT) as sock:
        started = time.monotonic()
        closed = False
        data = b""
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable:
                break
            if time.monotonic() - started > bound + 5.0:
                break
        data, closed = _wait_closed(sock, started + bound + 5.0)
        elapsed = time.monotonic() - started
    assert closed, "the gateway kept a trickled request head open"
    assert elapsed <= bound, f"closed after {elapsed:.2f}s, bound {bound:.1f}s"
    assert [r.status for r in parse_responses(data)] in ([], [408])


def test_partial_heads_do_not_stop_normal_requests(gw: Gateway) -> None:
    before = len(gw.echo.received)
    idle: list[socket.socket] = []
    try:
        for i in range(200):
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=IO_TIMEOUT)
            idle.append(sock)
            sock.sendall(b"GET /partial/%d HTTP/1.1\r\nHost: a\r\nX-Partial: " % i)
        last_sent = time.monotonic()
        # While all 200 heads are pending, a normal request is served at once.
        data, _ = exchange(
            gw.port,
            b"GET /normal HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            timeout=IO_TIMEOUT,
        )
        responses = parse_responses(data)
        assert [r.status for r in responses] == [200]
        assert echo_doc(responses[0])["path"] == "/normal"
        # ...and every partial head is eventually answered 408 or closed.
        deadline = last_sent + HEADER_TIMEOUT + 2.0 + 5.0
        for sock in idle:
            data, closed = _wait_closed(sock, deadline)
            assert closed, "a partial head outlived the header timeout"
            assert [r.status for r in parse_responses(data)] in ([], [408])
    finally:
        for sock in idle:
            sock.close()
    canary = assert_canary(gw, "partial-heads")
    assert gw.echo.received[before:] == ["/normal", canary]
