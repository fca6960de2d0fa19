"""The request head goes upstream only once its body framing is known to be valid
(issue 20 item 3): over real sockets, an upstream that records what it receives sees
nothing, or an aborted request, never a complete one, when the client is refused.

``_Recorder`` keeps every byte each upstream connection carried and answers only a
``GET /rec/sentinel`` (then closes): once the sentinel, sent after the client got its
refusal, is answered, whatever the refused request had sent upstream has arrived too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.proxy.test_http2 import RawClient
from turnout.samples.echo import EchoState
from turnout.testing import BackgroundLoop, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.requests import get, request


@dataclass
class Recorded:
    connections: list[bytearray] = field(default_factory=list)

    def requests_other_than_the_sentinel(self) -> list[bytes]:
        return [bytes(c) for c in self.connections if b"/sentinel" not in c and c]


class _Recorder(asyncio.Protocol):
    def __init__(self, record: Recorded) -> None:
        self.buf = bytearray()
        record.connections.append(self.buf)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.buf.startswith(b"GET /rec/sentinel") and b"\r\n\r\n" in self.buf:
            assert self.transport is not None  # closed after: never reused by the gateway
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()


@dataclass
class Env:
    port: int
    record: Recorded
    echo: EchoState

    def sentinel(self) -> None:
        assert get(self.port, "/rec/sentinel").status == 200


@pytest.fixture(scope="module")
def env(bg: BackgroundLoop, echo_module: EchoFactory, serve_module: ServeFactory) -> Iterator[Env]:
    record = Recorded()

    async def start() -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Recorder(record), "127.0.0.1", 0)

    server = bg.run(start())
    rec_port = server.sockets[0].getsockname()[1]
    echo = echo_module(pod="held-0")
    port = free_port()
    serve_module(
        dump(
            gateway("gw", port),
            backend("rec", rec_port),
            backend("echo", echo.port),
            route("r", [to("rec", "/rec"), to("echo", "/echo")]),
        )
    )
    yield Env(port, record, echo)
    bg.call(server.close)


def _send(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while got := s.recv(65536):
            out += got
        return out


CHUNKED = b"POST /rec/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_an_invalid_first_chunk_sends_nothing_upstream(env: Env) -> None:
    before = len(env.record.requests_other_than_the_sentinel())
    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as s:
        s.sendall(CHUNKED)
        env.sentinel()  # the gateway has had the head for a whole request's time
        s.sendall(b"zz\r\nhello\r\n0\r\n\r\n")
        reply = b""
        while got := s.recv(65536):
            reply += got
    assert reply.startswith(b"HTTP/1.1 400 ")
    env.sentinel()
    assert len(env.record.requests_other_than_the_sentinel()) == before


def test_an_invalid_later_chunk_leaves_an_aborted_request_upstream(env: Env) -> None:
    before = env.echo.requests
    head = CHUNKED.replace(b"/rec/x", b"/echo/x")
    reply = _send(env.port, head + b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert get(env.port, "/echo/after").status == 200
    assert env.echo.requests == before + 1  # only the GET: the POST never completed


def test_valid_chunked_and_expect_continue_still_pass(env: Env) -> None:
    before = env.echo.requests
    head = CHUNKED.replace(b"/rec/x", b"/echo/x")
    reply = _send(
        env.port,
        head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1) + b"5\r\nhello\r\n0\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200 ")
    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as s:
        s.sendall(
            head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", 1)
        )
        assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue")  # before any body
        s.sendall(b"5\r\nhello\r\n0\r\n\r\n")
        out = b""
        while got := s.recv(65536):
            out += got
        assert b"HTTP/1.1 200 " in out
    assert request(env.port, "/echo/y", method="POST", body=b"abc").status == 200
    assert env.echo.requests == before + 3


def _h2(port: int) -> RawClient:
    return RawClient(port, validate=False)


def test_h2_content_length_zero_with_data_sends_nothing_upstream(env: Env) -> None:
    before = len(env.record.requests_other_than_the_sentinel())
    c = _h2(env.port)
    try:
        c.request(1, b"/rec/x", b"POST", extra=[(b"content-length", b"0")], end=False)
        c.conn.send_data(1, b"surprise", end_stream=True)
        c.flush()
        c.until(lambda: c.ended(1))
        assert c.response(1)[0] in (0, 400)  # reset, or refused
    finally:
        c.close()
    env.sentinel()
    assert len(env.record.requests_other_than_the_sentinel()) == before


def test_h2_body_longer_than_declared_never_completes_upstream(env: Env) -> None:
    before = env.echo.requests
    c = _h2(env.port)
    try:
        c.request(1, b"/echo/x", b"POST", extra=[(b"content-length", b"5")], end=False)
        c.conn.send_data(1, b"hello")
        c.flush()
        c.conn.send_data(1, b"!", end_stream=True)
        c.flush()
        c.until(lambda: c.ended(1))
        assert c.response(1)[0] in (0, 400)
        # a correct one on the same connection completes
        c.request(3, b"/echo/y", b"POST", extra=[(b"content-length", b"5")], end=False)
        c.conn.send_data(3, b"hello", end_stream=True)
        c.flush()
        c.until(lambda: c.ended(3))
        assert c.response(3)[0] == 200
    finally:
        c.close()
    assert env.echo.requests == before + 1
