"""HTTP/2 from clients (h2c with prior knowledge, and ALPN ``h2`` over TLS) through a real
Turnout to HTTP/1.1 upstreams, with real clients: ``nghttp`` and ``h2load`` (Debian
``nghttp2-client``), ``httpx`` (``http2=True``) and a raw client built on ``h2`` over a
socket for what no polite client sends (resets, floods, huge header lists).

Upstreams: the echo service (what arrived upstream, as HTTP/1.1) and ``Blob``, defined
here, which hashes request bodies, streams deterministic bodies of any size with
backpressure and answers chunked with trailers, so integrity is checked end to end.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import httptools
import httpx
import psutil
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from hyperframe.frame import ContinuationFrame, HeadersFrame

from tests.conftest import EchoFactory, ServeFactory
from turnout.proxy.protocols.http2 import PREFACE
from turnout.samples.echo import EchoState
from turnout.testing import BackgroundLoop, TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to

NGHTTP = shutil.which("nghttp")
H2LOAD = shutil.which("h2load")
needs_nghttp2 = pytest.mark.skipif(
    NGHTTP is None or H2LOAD is None, reason="nghttp2-client (nghttp, h2load) is not installed"
)

BLOCK = hashlib.sha256(b"turnout").digest() * (65536 // 32)  # 64 KiB, not all one byte


def blob(size: int) -> bytes:
    return (BLOCK * (size // len(BLOCK) + 1))[:size]


# -- the Blob upstream -------------------------------------------------------------------------


class BlobProtocol(asyncio.Protocol):
    """``GET /blob/N``: N deterministic bytes, written as the socket drains.
    ``GET /trailers``: a chunked body, then ``grpc-status`` and ``grpc-message`` trailers.
    Anything else: JSON with the body's sha256 and length, headers and trailers."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self.in_trailers = False
        self.url = b""
        self.digest = hashlib.sha256()
        self.size = 0
        self.remaining = 0
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.headers, self.trailers, self.in_trailers = [], [], False
        self.url, self.digest, self.size = b"", hashlib.sha256(), 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        pair = (name.decode("latin-1").lower(), value.decode("latin-1"))
        (self.trailers if self.in_trailers else self.headers).append(pair)

    def on_headers_complete(self) -> None:
        self.in_trailers = True

    def on_body(self, body: bytes) -> None:
        self.digest.update(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        path = self.url.decode().partition("?")[0]
        if path.startswith("/blob/"):
            self.remaining = int(path[6:])
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % self.remaining)
            self._pump()
            return
        if path == "/trailers":
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n"
                b"transfer-encoding: chunked\r\ntrailer: grpc-status\r\n\r\n"
                b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"
            )
            return
        body = json.dumps(
            {
                "method": self.parser.get_method().decode(),
                "url": self.url.decode(),
                "version": self.parser.get_http_version(),
                "headers": self.headers,
                "trailers": self.trailers,
                "bytes": self.size,
                "sha256": self.digest.hexdigest(),
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    def _pump(self) -> None:
        assert self.transport is not None
        offset = 0
        while self.remaining and not self.paused:
            n = min(self.remaining, len(BLOCK) - offset)
            self.transport.write(BLOCK[offset : offset + n])
            offset = (offset + n) % len(BLOCK)
            self.remaining -= n

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()


# -- the gateway -------------------------------------------------------------------------------


@dataclass
class Env:
    gw: TurnoutProcess
    port: int
    echo: EchoState

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def env(bg: BackgroundLoop, echo_module: EchoFactory, serve_module: ServeFactory) -> Iterator[Env]:
    echo = echo_module(pod="echo-h2-0")

    async def start_blob() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(BlobProtocol, "127.0.0.1", 0)

    blob_server = bg.run(start_blob())
    blob_port = blob_server.sockets[0].getsockname()[1]
    port = free_port()
    config = dump(
        gateway("gw", port),
        backend("echo", echo.port),
        backend("blob", blob_port),
        route("main", [to("echo", "/echo"), to("blob", "/blob"), to("blob", "/up")]),
        route("trailers", [to("blob", "/trailers")], hostnames=["grpc.example"]),
    )
    gw = serve_module(config)
    yield Env(gw, port, echo)
    bg.call(blob_server.close)


# -- a raw h2 client ---------------------------------------------------------------------------


class RawClient:
    """An ``h2`` client connection over a plain socket (prior knowledge)."""

    def __init__(self, port: int, rcvbuf: int = 0, validate: bool = True) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.conn = H2Connection(
            H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=validate,
                normalize_outbound_headers=validate,
            )
        )
        self.conn.initiate_connection()
        self.flush()
        self.events: list[Event] = []
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def read(self, timeout: float = 10.0) -> list[Event]:
        """Read once; the events (and acknowledge received data)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            data = b""
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        for e in events:
            if isinstance(e, DataReceived) and e.flow_controlled_length:
                self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        self.flush()
        self.events += events
        return events

    def until(self, done: Any, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not done() and not self.closed:
            assert time.monotonic() < deadline, self.events[-10:]
            self.read(max(0.1, deadline - time.monotonic()))

    def request(
        self,
        sid: int,
        path: bytes,
        method: bytes = b"GET",
        extra: list[tuple[bytes, bytes]] | None = None,
        end: bool = True,
        authority: bytes = b"gw.example",
    ) -> None:
        headers = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":authority", authority),
            (b":path", path),
            *(extra or []),
        ]
        self.conn.send_headers(sid, headers, end_stream=end)
        self.flush()

    def ended(self, sid: int) -> bool:
        return any(
            isinstance(e, (StreamEnded, StreamReset)) and e.stream_id == sid for e in self.events
        )

    def response(self, sid: int) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        status, body, trailers = 0, b"", []
        for e in self.events:
            if isinstance(e, ResponseReceived) and e.stream_id == sid:
                status = int(dict(e.headers)[b":status"])
            elif isinstance(e, DataReceived) and e.stream_id == sid:
                body += e.data
            elif isinstance(e, TrailersReceived) and e.stream_id == sid:
                trailers = list(e.headers)
        return status, body, trailers

    def goaway(self) -> ConnectionTerminated | None:
        for e in self.events:
            if isinstance(e, ConnectionTerminated):
                return e
        return None

    def wait_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed:
            assert time.monotonic() < deadline, "the gateway kept the connection open"
            try:
                self.read(0.5)
            except Exception:  # the h2 state machine may refuse frames after GOAWAY
                self.closed = True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(env: Env) -> Iterator[RawClient]:
    client = RawClient(env.port)
    yield client
    client.close()


def _get_with_httpx(env: Env, path: str) -> httpx.Response:
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        return client.get(env.base + path)


# -- translation to HTTP/1.1 -------------------------------------------------------------------


def test_an_h2_request_arrives_upstream_as_clean_http11(raw: RawClient) -> None:
    raw.request(
        1,
        b"/echo/a/./b/../c?x=1&y=2",
        extra=[
            (b"accept", b"application/json"),
            (b"x-custom", b"one"),
            (b"x-custom", b"two"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
        ],
        authority=b"Gw.Example:8080",
    )
    raw.until(lambda: raw.ended(1))
    status, body, _ = raw.response(1)
    assert status == 200
    seen = json.loads(body)
    assert seen["method"] == "GET"
    assert seen["path"] == "/echo/a/c?x=1&y=2"
    assert seen["host"] == "Gw.Example:8080"
    assert seen["proto"] == "HTTP/1.1"
    headers = seen["headers"]
    assert headers["Accept"] == ["application/json"]
    assert headers["X-Custom"] == ["one", "two"]
    assert headers["Cookie"] == ["a=1; b=2"]
    assert headers["X-Forwarded-Proto"] == ["http"]
    assert not [n for n in headers if n.startswith(":")]
    for name in ("Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Http2-Settings"):
        assert name not in headers


def test_httpx_http2_bodies_both_ways_with_integrity(env: Env) -> None:
    up = os.urandom(8 << 20)
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        resp = client.post(env.base + "/up/fixed", content=up)
        assert resp.http_version == "HTTP/2"
        seen = resp.json()
        assert (seen["bytes"], seen["sha256"]) == (len(up), hashlib.sha256(up).hexdigest())
        assert ["content-length", str(len(up))] in seen["headers"]

        def pieces() -> Iterator[bytes]:
            for i in range(0, len(up), 300_000):
                yield up[i : i + 300_000]

        resp = client.post(env.base + "/up/streamed", content=pieces())
        seen = resp.json()
        assert (seen["bytes"], seen["sha256"]) == (len(up), hashlib.sha256(up).hexdigest())
        assert ["transfer-encoding", "chunked"] in seen["headers"]  # length unknown

        size = 8 << 20
        resp = client.get(env.base + f"/blob/{size}")
        assert resp.status_code == 200
        assert resp.headers["content-length"] == str(size)
        assert hashlib.sha256(resp.content).digest() == hashlib.sha256(blob(size)).digest()


def test_one_hundred_concurrent_streams_on_one_connection(env: Env) -> None:
    async def run() -> list[tuple[int, str, str]]:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(http1=False, http2=True, limits=limits, timeout=20) as c:

            async def one(i: int) -> tuple[int, str, str]:
                resp = await c.get(f"{env.base}/echo/stream/{i}", headers={"x-n": str(i)})
                body = resp.json()
                return resp.status_code, body["path"], body["headers"]["X-N"][0]

            return await asyncio.gather(*(one(i) for i in range(100)))

    results = asyncio.run(run())
    assert results == [(200, f"/echo/stream/{i}", str(i)) for i in range(100)]


def test_te_trailers_and_trailers_both_ways(raw: RawClient) -> None:
    raw.request(
        1,
        b"/up/grpc",
        b"POST",
        extra=[(b"te", b"trailers"), (b"content-type", b"application/grpc")],
        end=False,
    )
    raw.conn.send_data(1, b"\x00\x00\x00\x00\x05hello")
    raw.conn.send_headers(1, [(b"x-checksum", b"abc")], end_stream=True)
    raw.flush()
    raw.until(lambda: raw.ended(1))
    status, body, _ = raw.response(1)
    assert status == 200
    seen = json.loads(body)
    assert ["te", "trailers"] in seen["headers"]
    assert ["transfer-encoding", "chunked"] in seen["headers"]
    assert seen["trailers"] == [["x-checksum", "abc"]]
    assert seen["bytes"] == 10
    # response trailers (an HTTP/1.1 chunked upstream) come back as a HEADERS frame
    raw.request(3, b"/trailers", extra=[(b"te", b"trailers")], authority=b"grpc.example")
    raw.until(lambda: raw.ended(3))
    status, body, trailers = raw.response(3)
    assert (status, body) == (200, b"hello")
    assert trailers == [(b"grpc-status", b"0"), (b"grpc-message", b"fine")]


def test_malformed_stream_is_reset_and_the_connection_carries_on(env: Env) -> None:
    client = RawClient(env.port, validate=False)
    try:
        client.request(1, b"/echo/ok1", end=True)
        client.request(3, b"/echo/bad", extra=[(b"transfer-encoding", b"chunked")])
        client.request(5, b"/echo/bad", extra=[(b"x", b"a\x01b")])
        client.request(7, b"/echo/ok2")
        client.until(lambda: all(client.ended(s) for s in (1, 3, 5, 7)))
        resets = {e.stream_id: e.error_code for e in client.events if isinstance(e, StreamReset)}
        assert resets == {3: ErrorCodes.PROTOCOL_ERROR, 5: ErrorCodes.PROTOCOL_ERROR}
        assert client.response(1)[0] == 200 and client.response(7)[0] == 200
        client.request(9, b"/../../etc/passwd")  # refused with 400 on its stream only
        client.until(lambda: client.ended(9))
        assert client.response(9)[0] == 400
        assert client.goaway() is None
    finally:
        client.close()
    assert env.echo.received.count("/echo/bad") == 0


# -- real clients ------------------------------------------------------------------------------


@needs_nghttp2
def test_nghttp_prior_knowledge(env: Env, tmp_path: Path) -> None:
    assert NGHTTP is not None
    out = subprocess.run(
        [NGHTTP, "-H", "x-tool: nghttp", f"{env.base}/echo/tool?q=1"],
        capture_output=True,
        timeout=20,
        check=True,
    )
    seen = json.loads(out.stdout)
    assert (seen["path"], seen["method"]) == ("/echo/tool?q=1", "GET")
    assert seen["headers"]["X-Tool"] == ["nghttp"]
    data = tmp_path / "upload"
    data.write_bytes(b"n" * 300_000)
    out = subprocess.run(
        [NGHTTP, "-v", "-d", str(data), f"{env.base}/up/nghttp"],
        capture_output=True,
        timeout=20,
        check=True,
    )
    text = out.stdout.decode()
    assert "HTTP Upgrade" not in text  # straight to HTTP/2
    assert ":status: 200" in text
    assert '"bytes": 300000' in text


@needs_nghttp2
def test_h2load_thousand_requests(env: Env) -> None:
    assert H2LOAD is not None
    out = subprocess.run(
        [H2LOAD, "-n", "1000", "-c", "4", "-m", "10", f"{env.base}/echo/load"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    text = out.stdout.decode()
    assert "1000 succeeded" in text, text
    assert "1000 2xx" in text, text


def test_partial_preface_waits_for_the_rest(env: Env) -> None:
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    try:
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        data = conn.data_to_send()
        assert data.startswith(PREFACE)
        for i in range(0, 20, 5):  # the preface in pieces, with pauses
            sock.sendall(data[i : i + 5])
            time.sleep(0.05)
        sock.sendall(data[20:])
        conn.send_headers(
            1,
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (b":path", b"/echo/p"),
            ],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        status = 0
        deadline = time.monotonic() + 10
        while not status and time.monotonic() < deadline:
            for e in conn.receive_data(sock.recv(65536)):
                if isinstance(e, ResponseReceived):
                    status = int(dict(e.headers)[b":status"])
            sock.sendall(conn.data_to_send())
        assert status == 200
    finally:
        sock.close()


def test_h2c_upgrade_from_http11_is_not_honoured(env: Env) -> None:
    """``Upgrade: h2c`` is answered as plain HTTP/1.1 (h2c smuggling, reliability.md b3)."""
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    try:
        sock.sendall(
            b"GET /echo/h2c HTTP/1.1\r\nHost: gw.example\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"upgrade" not in head.lower()
    seen = json.loads(body)
    assert seen["proto"] == "HTTP/1.1"
    for name in ("Upgrade", "Http2-Settings", "Connection"):
        assert name not in seen["headers"]


# -- attacks -----------------------------------------------------------------------------------


def test_rapid_reset_loop_gets_goaway_and_others_are_still_served(env: Env) -> None:
    client = RawClient(env.port)
    try:
        for i in range(2000):
            sid = 1 + 2 * i
            try:
                client.request(sid, b"/echo/reset", end=False)
                client.conn.reset_stream(sid, ErrorCodes.CANCEL)
                client.flush()
            except (OSError, Exception):  # the gateway hung up mid-loop
                break
        client.wait_closed()
        term = client.goaway()
        assert term is not None and term.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        client.close()
    assert _get_with_httpx(env, "/echo/after-reset").status_code == 200


def test_header_lists_over_the_limits(env: Env) -> None:
    client = RawClient(env.port)
    try:
        # over the request-header budget (32 KiB) but under HTTP/2's 64 KiB list: 431
        client.request(1, b"/echo/big", extra=[(b"x-big", b"v" * 40000)])
        client.until(lambda: client.ended(1))
        assert client.response(1)[0] == 431
        # over 64 KiB decoded: the connection ends (HPACK state cannot be trusted)
        client.request(3, b"/echo/huge", extra=[(b"x-%d" % i, b"v" * 4000) for i in range(30)])
        client.wait_closed()
        term = client.goaway()
        assert term is not None and term.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        client.close()
    assert _get_with_httpx(env, "/echo/after-huge").status_code == 200


def test_continuation_flood_gets_goaway(env: Env) -> None:
    client = RawClient(env.port)
    try:
        block = client.conn.encoder.encode(
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
        )
        client.sock.sendall(HeadersFrame(1, data=block).serialize())  # no END_HEADERS
        junk = ContinuationFrame(1, data=b"\x00" * 16000).serialize()
        try:
            for _ in range(200):  # 3 MB of one header block; h2 stops at 64 frames
                client.sock.sendall(junk)
        except OSError:
            pass
        client.wait_closed()
        term = client.goaway()
        assert term is not None and term.error_code == ErrorCodes.PROTOCOL_ERROR
    finally:
        client.close()
    assert _get_with_httpx(env, "/echo/after-continuation").status_code == 200


def test_slow_reading_client_does_not_make_the_gateway_buffer(env: Env) -> None:
    worker = psutil.Process(env.gw.worker_pids()[0])
    size = 96 << 20
    client = RawClient(env.port, rcvbuf=32768)
    try:
        # the largest windows a client can give: only the gateway's own bounds remain
        client.conn.increment_flow_control_window((1 << 31) - 1 - 65535)
        client.request(1, b"/blob/%d" % size)
        client.conn.increment_flow_control_window((1 << 31) - 1 - 65535, stream_id=1)
        client.flush()
        before = worker.memory_info().rss
        time.sleep(2.0)  # not reading: the gateway must stop its upstream, not buffer
        grown = worker.memory_info().rss - before
        assert grown < 24 << 20, f"the worker grew by {grown >> 20} MiB"
        # then read everything: the body is complete and intact
        digest = hashlib.sha256()
        got = 0
        deadline = time.monotonic() + 40
        while not client.ended(1):
            assert time.monotonic() < deadline
            for e in client.read():
                if isinstance(e, DataReceived):
                    digest.update(e.data)
                    got += len(e.data)
        assert got == size
        assert digest.digest() == hashlib.sha256(blob(size)).digest()
    finally:
        client.close()


# -- TLS: ALPN h2 is handed over before HTTP/1.1 sees a byte ---------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_alpn_h2_is_handed_over_to_http2(bg: BackgroundLoop, tmp_path: Path) -> None:
    """``Http1Transport`` behind a TLS server offering h2: a client choosing h2 gets HTTP/2
    (here from a gateway with no routes: a 404 over HTTP/2, on asyncio's SSL transport)."""
    from turnout.proxy.runtime import ProxySettings, Runtime
    from turnout.proxy.transports.http1 import Http1Transport

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])

    async def start() -> tuple[asyncio.Server, Runtime]:
        loop = asyncio.get_running_loop()
        rt = Runtime(loop, ProxySettings())
        factory = cast(Any, partial(Http1Transport, rt, "tls-test", b"https"))
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
        return server, rt

    server, rt = bg.run(start())
    port = server.sockets[0].getsockname()[1]
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as plain,
            ctx.wrap_socket(plain, server_hostname="localhost") as sock,
        ):
            assert sock.selected_alpn_protocol() == "h2"
            conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
            conn.initiate_connection()
            conn.send_headers(
                1,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"localhost"),
                    (b":path", b"/nowhere"),
                ],
                end_stream=True,
            )
            sock.sendall(conn.data_to_send())
            status, body, ended = 0, b"", False
            deadline = time.monotonic() + 10
            while not ended and time.monotonic() < deadline:
                for e in conn.receive_data(sock.recv(65536)):
                    if isinstance(e, ResponseReceived):
                        status = int(dict(e.headers)[b":status"])
                    elif isinstance(e, DataReceived):
                        body += e.data
                    elif isinstance(e, StreamEnded):
                        ended = True
                sock.sendall(conn.data_to_send())
        assert status == 404 and b"no_route" in body
        assert rt.stats.connections_total == 1  # counted once, by the HTTP/2 protocol
    finally:
        bg.call(server.close)
