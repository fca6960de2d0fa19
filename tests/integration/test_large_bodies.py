"""1 GiB up and down through the gateway with flat worker memory (bodies stream with
backpressure; nothing is buffered whole).

The client is deliberately slower than the upstream on the download (it reads in small
pieces with pauses for part of the transfer), so without backpressure the worker would
have to buffer what the upstream sends faster than the client takes it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httptools
import psutil
import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing import BackgroundLoop, TurnoutProcess, free_port
from turnout.testing.faults import start_faults
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.rawhttp import parse_responses

GIB = 1 << 30
# Growth allowed while a GiB streams through: far below what buffering would need.
RSS_GROWTH_LIMIT = 64 << 20


@dataclass
class BodyEnv:
    gw: TurnoutProcess
    port: int


@pytest.fixture(scope="module")
def body_env(
    bg: BackgroundLoop, echo_module: EchoFactory, serve_module: ServeFactory
) -> Iterator[BodyEnv]:
    echo = echo_module()
    fault_server, faults = bg.run(start_faults())
    port = free_port()
    strip = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
    }
    gw = serve_module(
        dump(
            gateway("gw", port),
            backend("echo", echo.port),
            backend("faults", faults.port),
            route("r", [to("echo", "/up"), to("faults", "/down", filters=[strip])]),
        )
    )
    yield BodyEnv(gw, port)
    bg.call(fault_server.close)


def _worker_rss(gw: TurnoutProcess) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in gw.worker_pids())


class _RssSampler:
    def __init__(self, gw: TurnoutProcess) -> None:
        self.gw = gw
        self.base = _worker_rss(gw)
        self.peak = self.base

    def sample(self) -> None:
        self.peak = max(self.peak, _worker_rss(self.gw))


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True])
def test_1gib_upload_keeps_memory_flat(body_env: BodyEnv, chunked: bool) -> None:
    rss = _RssSampler(body_env.gw)
    piece = b"u" * (1 << 20)
    with socket.create_connection(("127.0.0.1", body_env.port), timeout=30) as sock:
        if chunked:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            frame = b"%x\r\n%s\r\n" % (len(piece), piece)
        else:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % GIB)
            frame = piece
        for i in range(GIB // len(piece)):
            sock.sendall(frame)
            if i % 64 == 0:
                rss.sample()
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        data = b""
        while b"body_bytes" not in data or not data.endswith(b"\n"):
            data += sock.recv(65536)
    (resp,) = parse_responses(data)
    assert resp.status == 200
    assert json.loads(resp.body)["body_bytes"] == GIB
    assert rss.peak - rss.base < RSS_GROWTH_LIMIT, (rss.base, rss.peak)


class _BodyCounter:
    """Counts response body bytes with llhttp, so chunk framing is decoded exactly."""

    def __init__(self) -> None:
        self.body = 0
        self.complete = False
        self.parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True])
def test_1gib_download_to_a_slow_reader_keeps_memory_flat(body_env: BodyEnv, chunked: bool) -> None:
    rss = _RssSampler(body_env.gw)
    query = b"?chunked=1" if chunked else b""
    counter = _BodyCounter()
    with socket.create_connection(("127.0.0.1", body_env.port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /down/bytes/%d%s HTTP/1.1\r\nHost: a\r\n\r\n" % (GIB, query))
        # Start slowly: the upstream is far faster than this reader for a while.
        slow_until = time.monotonic() + 1.5
        reads = 0
        while not counter.complete:
            slow = time.monotonic() < slow_until
            chunk = sock.recv(16384 if slow else 1 << 20)
            if not chunk:
                break
            counter.parser.feed_data(chunk)
            reads += 1
            if slow:
                time.sleep(0.01)
            if reads % 256 == 0:
                rss.sample()
    assert counter.complete
    assert counter.body == GIB
    assert rss.peak - rss.base < RSS_GROWTH_LIMIT, (rss.base, rss.peak)
