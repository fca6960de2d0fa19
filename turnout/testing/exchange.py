"""Drive a real ``Exchange`` without sockets: fake loop, fake client, fake upstream sockets.

    h = ExchangeHarness(manifests)            # Gateway/HTTPRoute/Backend YAML
    call = h.request(b"GET", b"/api")         # routed, filtered, connecting
    up = h.connect(call)                      # the connect succeeds: an upstream socket
    h.respond(up, b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")
    assert call.down.status == 200

Everything runs on a ``FakeLoop`` (``h.loop``): timers fire only on ``h.loop.advance``,
and the tasks the exchange starts (connects, a JWKS fetch, Redis) wait until the test
resolves them, so orderings that sockets cannot provoke become plain sequences of
calls. The snapshot, route tables, pools, upstream connections and codecs are the real
ones; only the sockets are fakes (``peers.FakeSocket``), so the harness also works
against the compiled data plane.
"""

from __future__ import annotations

import asyncio
from typing import cast

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.proxy.forward import Forwarder
from turnout.proxy.protocols.heads import Headers, RequestHead
from turnout.proxy.runtime import ProxySettings, Runtime
from turnout.proxy.snapshot.tables import RouteAction, Snapshot
from turnout.proxy.streams import Exchange
from turnout.proxy.upstream.connection import UpstreamConnection
from turnout.proxy.upstream.pool import EndpointPool
from turnout.testing.fakeloop import FakeLoop, FakeTask
from turnout.testing.peers import FakeDownstream, FakeSocket


class Call:
    """One request in flight: its exchange and the fake client it answers."""

    __slots__ = ("down", "exchange", "head")

    def __init__(self, exchange: Exchange, down: FakeDownstream, head: RequestHead) -> None:
        self.exchange = exchange
        self.down = down
        self.head = head


class Upstream:
    """One upstream connection the harness opened, and the fake socket under it."""

    __slots__ = ("conn", "socket")

    def __init__(self, conn: UpstreamConnection, socket: FakeSocket) -> None:
        self.conn = conn
        self.socket = socket

    @property
    def received(self) -> bytes:
        """Everything the gateway wrote to this upstream."""
        return bytes(self.socket.written)


class ExchangeHarness:
    def __init__(
        self,
        manifests: str,
        settings: ProxySettings | None = None,
    ) -> None:
        self.loop = FakeLoop()
        resources, _ = parse_text(manifests, "harness.yaml")
        config, _ = validate(resources)
        self.rt = Runtime(cast(asyncio.AbstractEventLoop, self.loop), settings or ProxySettings())
        self.snapshot: Snapshot = self.rt.build(config, 1)
        self.rt.install(self.snapshot)
        self.table = next(iter(self.snapshot.sockets.values()))

    # -- requests ------------------------------------------------------------------------------

    def head(
        self,
        method: bytes = b"GET",
        target: bytes = b"/",
        headers: Headers | None = None,
        host: bytes = b"example.com",
        content_length: int | None = None,
    ) -> RequestHead:
        path, _, query = target.partition(b"?")
        head = RequestHead(
            method, path, query, list(headers or []), host, host.decode().partition(":")[0]
        )
        head.content_length = content_length
        return head

    def request(
        self,
        method: bytes = b"GET",
        target: bytes = b"/",
        headers: Headers | None = None,
        host: bytes = b"example.com",
        content_length: int | None = None,
        down: FakeDownstream | None = None,
    ) -> Call:
        """Start an exchange for this request (routing and filters run now)."""
        head = self.head(method, target, headers, host, content_length)
        client = down if down is not None else FakeDownstream()
        exchange = Exchange(self.rt, client, head, self.loop.time())
        exchange.start(self.table)
        self.loop.run_ready()
        return Call(exchange, client, head)

    def action(self, target: bytes = b"/", host: bytes = b"example.com") -> RouteAction:
        """The compiled rule a request for ``target`` is routed to."""
        _, cand = self.table.route(self.head(target=target, host=host))
        assert cand is not None, f"no route for {target!r}"
        return cand.action

    # -- upstream ------------------------------------------------------------------------------

    def forwarder(self, call: Call) -> Forwarder:
        """The exchange's upstream side (there once the request's filters passed)."""
        fw = call.exchange.forward
        assert fw is not None, "the request was not forwarded"
        return fw

    def connecting(self, call: Call) -> FakeTask:
        task = self.forwarder(call).connecting
        assert task is not None, "the exchange is not connecting"
        return cast(FakeTask, task)

    def connect(self, call: Call) -> Upstream:
        """The exchange's pending connect succeeds: returns the new upstream connection."""
        task = self.connecting(call)
        endpoint = self.forwarder(call).endpoint
        assert endpoint is not None
        up = self.open(endpoint.pool)
        task.set_result(up.conn)
        self.loop.run_ready()
        return up

    def fail_connect(self, call: Call, exc: BaseException | None = None) -> None:
        self.connecting(call).set_exception(exc or ConnectionRefusedError("refused"))
        self.loop.run_ready()

    def open(self, pool: EndpointPool) -> Upstream:
        """A connected ``UpstreamConnection`` of ``pool`` on a fake socket."""
        conn = UpstreamConnection(pool)
        socket = FakeSocket()
        conn.connection_made(cast(asyncio.Transport, socket))
        return Upstream(conn, socket)

    def idle(self, pool: EndpointPool) -> Upstream:
        """Put a fresh connection in ``pool``'s idle list (the next request takes it)."""
        up = self.open(pool)
        pool.idle.append(up.conn)
        return up

    def respond(self, up: Upstream, data: bytes) -> None:
        """Bytes from the upstream (a response or part of one)."""
        up.conn.data_received(data)
        self.loop.run_ready()

    def reset(self, up: Upstream) -> None:
        """The upstream connection drops."""
        up.socket.closing = True
        up.conn.connection_lost(ConnectionResetError("reset"))
        self.loop.run_ready()
