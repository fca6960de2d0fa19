"""A feature-less HTTP/1.1 forwarder on uvloop + httptools: the "pure-Python limit" row.

No routing, metrics, logging, timeouts or header rewriting beyond what HTTP/1.1 framing
requires: parse the request, rebuild its head (dropping hop-by-hop headers), send it on
a pooled keep-alive upstream connection, stream the response back, return the upstream
connection to a LIFO idle pool. Keep-alive on both sides, one request in flight per
client connection (requests pipelined by the client are queued).

    python bench/forwarder.py --listen 127.0.0.1:8082 --upstream 127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import deque
from http import HTTPStatus

import httptools
import uvloop

HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"upgrade")
)
REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream; serves one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.client: Downstream | None = None
        self.headers: list[bytes] = []
        self.chunked = False
        self.reusable = True
        self.usable = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.usable = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        client, self.client = self.client, None
        if client is not None:
            client.upstream_failed()

    def send(self, client: Downstream, data: bytes) -> None:
        self.client = client
        self.headers = []
        self.chunked = False
        self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.usable = False
            self.transport.close()  # type: ignore[union-attr]

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname == b"transfer-encoding":
            self.chunked = True
        if lname not in HOP:
            self.headers += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        p = self.parser
        self.reusable = p.should_keep_alive()
        status = p.get_status_code()
        head = b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))
        framing = b"transfer-encoding: chunked\r\n" if self.chunked else b""
        assert self.client is not None
        self.client.write(b"".join([head, *self.headers, framing, b"\r\n"]))

    def on_body(self, body: bytes) -> None:
        assert self.client is not None
        if self.chunked:
            self.client.write(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self.client.write(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        assert client is not None
        if self.chunked:
            client.write(b"0\r\n\r\n")
        if self.reusable and self.usable:
            self.pool.release(self)
        else:
            self.usable = False
            self.transport.close()  # type: ignore[union-attr]
        client.exchange_done()


class Pool:
    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        self.loop, self.host, self.port = loop, host, port
        self.idle: list[Upstream] = []

    async def acquire(self) -> Upstream:
        while self.idle:
            conn = self.idle.pop()
            if conn.usable:
                return conn
        _, conn = await self.loop.create_connection(lambda: Upstream(self), self.host, self.port)
        return conn

    def release(self, conn: Upstream) -> None:
        if len(self.idle) < 256:
            self.idle.append(conn)
        else:
            conn.transport.close()  # type: ignore[union-attr]


class Downstream(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[bytes] = []
        self.body: list[bytes] = []
        self.pending: deque[bytes] = deque()
        self.busy = False
        self.keep_alive = True
        self.closed = False
        self.connecting: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP:
            self.headers += (name, b": ", value, b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        if body:
            self.headers += (b"content-length: %d\r\n" % len(body),)
        method = self.parser.get_method()
        self.keep_alive = self.parser.should_keep_alive()
        request = b"".join([method, b" ", self.url, b" HTTP/1.1\r\n", *self.headers, b"\r\n", body])
        if self.busy:
            self.pending.append(request)
        else:
            self.start(request)

    def start(self, request: bytes) -> None:
        self.busy = True
        upstream = self.pool.idle.pop() if self.pool.idle else None
        if upstream is not None and upstream.usable:
            upstream.send(self, request)
        else:
            self.connecting = asyncio.ensure_future(self.start_slow(request))

    async def start_slow(self, request: bytes) -> None:
        try:
            upstream = await self.pool.acquire()
        except OSError:
            self.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            self.exchange_done()
            return
        upstream.send(self, request)

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def exchange_done(self) -> None:
        self.busy = False
        if not self.keep_alive:
            self.transport.close()  # type: ignore[union-attr]
        elif self.pending:
            self.start(self.pending.popleft())

    def upstream_failed(self) -> None:
        self.busy = False
        self.transport.close()  # type: ignore[union-attr]


async def main(listen: str, upstream: str) -> None:
    loop = asyncio.get_running_loop()
    lhost, lport = listen.rsplit(":", 1)
    uhost, uport = upstream.rsplit(":", 1)
    pool = Pool(loop, uhost, int(uport))
    server = await loop.create_server(lambda: Downstream(pool), lhost, int(lport), backlog=4096)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    args = ap.parse_args()
    uvloop.run(main(args.listen, args.upstream))
