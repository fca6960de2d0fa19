"""Fuzz targets: each takes one input (bytes) and fails with an AssertionError or an
unexpected exception when an invariant breaks.

The targets drive the sans-IO parsers the gateway exposes to untrusted bytes: the
HTTP/1.1 request codec, the HTTP/2 server codec, route lookup in a compiled snapshot
(requests parsed by the HTTP/1.1 codec, then routed), the configuration parser and
validator, and the TLS ClientHello parser. The input's first byte picks a split point
(except for ``config``, parsed whole), so that the same bytes are also fed across two
reads.

``mutate`` is the deterministic mutator used when atheris is not installed (and by the
short CI run): bit flips, byte insertions and deletions, splices of two corpus entries
and repetition of a slice, chosen by a seeded ``random.Random``. ``CORPUS`` is
``tests/fuzz/corpus/<target>/``; ``bench/fuzz.py --seed`` rebuilds it from the test
vectors.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from string import Template

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.proxy.protocols.heads import Headers, RequestHead
from turnout.proxy.protocols.http1 import Http1ServerConnection, Limits
from turnout.proxy.protocols.http2 import Http2ServerConnection
from turnout.proxy.protocols.tls_clienthello import (
    ClientHelloError,
    ClientHelloParser,
    HelloStatus,
)
from turnout.proxy.routing.keys import find_key

CORPUS = Path(__file__).with_name("corpus")
REPO = Path(__file__).resolve().parents[2]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# What the HTTP/1.1 codec may answer a request it refuses (each is a client error,
# except 501 for an unsupported transfer coding and 505 for an unsupported version).
REFUSALS = frozenset({400, 405, 413, 414, 417, 431, 501, 505})


def split(data: bytes) -> tuple[bytes, bytes]:
    if not data:
        return b"", b""
    cut = data[0] % (len(data) + 1)
    return data[1:][:cut], data[1:][cut:]


class Http1Recorder:
    """The codec's handler: records events and checks their order."""

    def __init__(self) -> None:
        self.heads: list[RequestHead] = []
        self.completed = 0
        self.errors: list[int] = []
        self.open = False

    def request_received(self, head: RequestHead) -> None:
        assert not self.open, "a request head arrived while the previous request was open"
        assert not self.errors, "a request head arrived after a protocol error"
        self.heads.append(head)
        self.open = True

    def request_body(self, data: bytes) -> None:
        assert self.open, "body bytes outside a request"

    def request_complete(self, trailers: Headers | None) -> None:
        assert self.open, "a request completed that was never received"
        self.open = False
        self.completed += 1

    def tunnel_data(self, data: bytes) -> None:
        pass

    def protocol_error(self, status: int, message: str) -> None:
        assert status in REFUSALS, f"refused with {status}: {message}"
        assert message, "a refusal without a message"
        self.errors.append(status)


def _http1(data: bytes, limits: Limits) -> Http1Recorder:
    rec = Http1Recorder()
    codec = Http1ServerConnection(rec, limits)
    answered = 0
    for part in split(data):
        codec.feed(part)
        # The transport answers each complete request; then the codec delivers the next
        # pipelined one (bounded: each round answers one more request).
        while rec.completed > answered and not rec.open:
            answered += 1
            codec.response_finished()
    if codec.failed and not rec.open:
        # A refusal behind the request being answered is reported once it is answered.
        assert rec.errors, "the codec failed without telling its handler"
    return rec


def http1(data: bytes) -> None:
    _http1(data, Limits(max_url=1024, max_header_bytes=4096, max_headers=20, max_body=65536))


class Http2Recorder:
    def __init__(self) -> None:
        self.open: set[int] = set()

    def request_received(self, stream_id: int, head: RequestHead) -> None:
        assert stream_id % 2 == 1, f"request on an even stream {stream_id}"
        assert stream_id not in self.open, f"stream {stream_id} received twice"
        self.open.add(stream_id)

    def request_body(self, stream_id: int, data: bytes) -> None:
        assert stream_id in self.open, f"body on stream {stream_id} that was not received"

    def request_complete(self, stream_id: int, trailers: Headers | None) -> None:
        assert stream_id in self.open, f"stream {stream_id} completed unreceived"

    def request_failed(self, stream_id: int, status: int, message: str) -> None:
        assert 400 <= status < 500, f"stream failed with {status}"

    def request_refused(self, status: int, message: str) -> None:
        assert status == 0 or 400 <= status < 500, f"refused with {status}: {message}"

    def stream_writable(self, stream_id: int, writable: bool) -> None:
        pass

    def stream_closed(self, stream_id: int, reset: bool) -> None:
        self.open.discard(stream_id)


def http2(data: bytes) -> None:
    rec = Http2Recorder()
    conn = Http2ServerConnection(rec, Limits())
    first, second = split(data)
    conn.receive(PREFACE + first)
    conn.receive(second)
    conn.data_to_send()
    if conn.closed:
        conn.receive(b"\x00" * 9)  # input after the end is ignored, not an error


_TABLE: list[object] = []


def _port_table() -> object:
    """The route table of bench/turnout-gateway.yaml, compiled once."""
    if not _TABLE:
        import asyncio

        from turnout.proxy.runtime import ProxySettings, Runtime

        text = Template((REPO / "bench" / "turnout-gateway.yaml").read_text())
        resources, _ = parse_text(
            text.safe_substitute(gateway_port=18999, upstream="127.0.0.1:18998"), "gateway"
        )
        config, problems = validate(resources)
        assert not problems, problems
        loop = asyncio.new_event_loop()
        rt = Runtime(loop, ProxySettings(), None)
        snapshot = rt.build(config, 1)
        _TABLE.append(next(iter(snapshot.sockets.values())))
    return _TABLE[0]


def routing(data: bytes) -> None:
    table = _port_table()
    rec = _http1(data, Limits())
    for head in rec.heads:
        listener, candidate = table.route(head)  # type: ignore[attr-defined]
        if candidate is not None:
            assert listener is not None, "a candidate without a listener"
        find_key(head)


def config(data: bytes) -> None:
    # Whole: no split byte (a leading control byte would make every input invalid YAML).
    text = data.decode("utf-8", "replace")
    resources, problems = parse_text(text, "fuzz.yaml")
    for problem in problems:
        assert problem.source == "fuzz.yaml" and problem.message, problem
    _, more = validate(resources)
    for problem in more:
        assert problem.message, problem


def clienthello(data: bytes) -> None:
    parser = ClientHelloParser()
    status = HelloStatus.NEED_MORE
    for part in split(data):
        status = parser.feed(part)
        if status != HelloStatus.NEED_MORE:
            break
    if status == HelloStatus.FOUND:
        name = parser.server_name
        assert name and name == name.lower(), name
    if status != HelloStatus.NEED_MORE:
        try:
            parser.feed(b"\x16")
        except ClientHelloError:
            pass
        else:
            raise AssertionError("feeding after a final answer was accepted")


Target = Callable[[bytes], None]

TARGETS: dict[str, Target] = {
    "http1": http1,
    "http2": http2,
    "routing": routing,
    "config": config,
    "clienthello": clienthello,
}


def corpus(target: str) -> list[bytes]:
    folder = CORPUS / target
    return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []


def mutate(rng: random.Random, data: bytes, pool: list[bytes], limit: int = 8192) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes([rng.choice(b"\r\n\x00:; ,\t0aZ\xff\x7f")])
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3 and pool:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            buf[pos:pos] = other[start : start + rng.randint(1, 64)]
        elif op == 4 and buf:
            start = rng.randrange(len(buf))
            piece = bytes(buf[start : start + rng.randint(1, 32)])
            buf[pos:pos] = piece * rng.randint(2, 64)
        elif buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf[:limit])
