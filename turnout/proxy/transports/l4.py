"""L4 transport: pipe a TCP or TLS-passthrough client connection to a backend endpoint.

``L4Transport`` is the client-side protocol of an L4 socket and ``L4Upstream`` the
backend side; both are asyncio protocols by duck typing (like ``Http1Transport``), and
one pair lives per client connection. How a connection goes:

1. Accept. The socket's ``L4Table`` comes from the snapshot current at accept time and is
   kept for the connection's life, so a reload never disturbs an open pipe. Beyond the
   listener's connection cap (``L4Listener.active`` is per worker and survives reloads)
   the connection is closed at once and counted as refused.
2. TLS passthrough only: bytes are fed to the sans-IO ``ClientHelloParser`` until it
   answers; the server name picks the route (``L4Table.lookup``). No SNI, no route, not
   TLS, malformed or oversize: the connection closes (an unknown name gets a TLS
   ``unrecognized_name`` alert first). The ClientHello must arrive within 5 seconds.
3. The route picks a backend by weight, the Backend's balancer an endpoint (health and
   outlier ejection apply); a fresh upstream socket is opened (L4 connections are never
   pooled) within the Backend's connect timeout; on failure one other endpoint is tried.
   Client reading is paused meanwhile; whatever was read (the ClientHello) goes first.
4. Pipe. Each side's bytes are written to the other; when a side's write buffer passes
   its high-water mark asyncio calls ``pause_writing`` on that side's protocol, which
   pauses reading on the *other* side until ``resume_writing`` (backpressure coupled).
   EOF from one side becomes ``write_eof`` on the other (half-close); when both
   directions have ended, or either side is lost, both close (``close`` flushes).
5. Timeouts need no precision, so there are no per-connection timers: the runtime's
   sweeper calls ``sweep`` once a second, which enforces the ClientHello deadline and
   the idle timeout (no byte either way), and flushes the byte counters into the
   worker's stats. Connecting is the only step with a task (``create_connection`` is a
   coroutine); it carries the connect timeout.

Draining: servers stop accepting; connections still reading a ClientHello close; pipes
keep going until the worker's drain grace ends and it aborts what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, cast

from turnout.proxy.protocols.tls_clienthello import (
    UNRECOGNIZED_NAME_ALERT,
    ClientHelloParser,
    HelloStatus,
)
from turnout.proxy.routing.l4 import CLIENT_HELLO_TIMEOUT
from turnout.proxy.runtime import Runtime

if TYPE_CHECKING:
    from turnout.proxy.routing.l4 import L4Table
    from turnout.proxy.snapshot import Cluster, L4Route
    from turnout.proxy.upstream.endpoints import Endpoint

log = logging.getLogger("turnout.proxy")

_REFUSED_BY_STATUS = {
    HelloStatus.NO_SNI: "no_sni",
    HelloStatus.NOT_TLS: "not_tls",
    HelloStatus.MALFORMED: "malformed",
    HelloStatus.TOO_LARGE: "too_large",
}


class L4Listener:
    """Per worker and L4 socket, across reloads: the connections open on it (the cap)."""

    __slots__ = ("active", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self.active = 0


class L4Upstream:
    """The backend side of a pipe; forwards every event to its ``L4Transport``."""

    __slots__ = ("down", "transport")

    def __init__(self, down: L4Transport) -> None:
        self.down = down
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        down = self.down
        down.down_bytes += len(data)
        down.busy = True
        if down.transport is not None and not down.closed:
            down.transport.write(data)

    def eof_received(self) -> bool:
        self.down.upstream_eof()
        return True  # keep the socket: the other direction may still be sending

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        self.down.upstream_lost()

    # The backend reads slower than the client sends: stop reading the client.
    def pause_writing(self) -> None:
        self.down.pause_client()

    def resume_writing(self) -> None:
        self.down.resume_client()


class L4Transport:
    """The client side of an L4 connection; see the module docstring."""

    __slots__ = (
        "backend",
        "busy",
        "closed",
        "down_bytes",
        "eof_from_client",
        "eof_from_upstream",
        "hello",
        "idle_timeout",
        "key",
        "last_active",
        "listener",
        "pending",
        "route",
        "rt",
        "table",
        "transport",
        "up_bytes",
        "upstream",
    )

    def __init__(self, rt: Runtime, key: str, listener: L4Listener) -> None:
        self.rt = rt
        self.key = key
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.table: L4Table[L4Route] | None = None
        self.hello: ClientHelloParser | None = None  # TLS: until the route is known
        self.route: L4Route | None = None
        self.backend = ""
        self.upstream: L4Upstream | None = None  # set once connected
        self.pending: list[bytes] = []  # read before the upstream connected
        self.eof_from_client = False
        self.eof_from_upstream = False
        self.closed = False
        self.up_bytes = 0  # client -> backend, not yet flushed into the stats
        self.down_bytes = 0
        self.busy = False  # a byte moved since the last sweep
        self.last_active = 0.0  # sweep time of the last seen activity; or hello deadline
        self.idle_timeout = 0.0

    # -- accept --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)
        rt = self.rt
        table = rt.snapshot.l4.get(self.key)
        if table is None or rt.draining:
            tr.close()
            self.closed = True
            return
        self.table = table
        listener = self.listener
        if table.max_connections and listener.active >= table.max_connections:
            rt.stats.l4_count("refused", f"{table.gateway}/{table.listener}", "max_connections")
            tr.close()
            self.closed = True
            return
        listener.active += 1
        rt.connections.add(self)
        rt.stats.active_connections += 1
        rt.stats.connections_total += 1
        self.idle_timeout = table.idle_timeout
        now = perf_counter()
        if table.passthrough:
            self.hello = ClientHelloParser()
            # the ClientHello deadline, checked by sweep while ``hello`` is set
            self.last_active = now + CLIENT_HELLO_TIMEOUT
        else:
            self.last_active = now
            self._start(table.lookup(None))

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            self.up_bytes += len(data)
            self.busy = True
            upstream.transport.write(data)
            return
        hello = self.hello
        if hello is None:
            self.pending.append(data)  # connecting (reading is paused; a last chunk)
            return
        status = hello.feed(data)
        if status is HelloStatus.NEED_MORE:
            return
        self.hello = None
        table = self.table
        assert table is not None
        if status is not HelloStatus.FOUND:
            self._refuse(_REFUSED_BY_STATUS[status])
            return
        route = table.lookup(hello.server_name)
        if route is None:
            if self.transport is not None:
                self.transport.write(UNRECOGNIZED_NAME_ALERT)
            self._refuse("no_route")
            return
        self.pending.append(bytes(hello.buffered))
        self.last_active = perf_counter()
        self._start(route)

    def eof_received(self) -> bool:
        self.eof_from_client = True
        upstream = self.upstream
        if upstream is None or upstream.transport is None:
            if self.hello is not None or self.route is None:
                self._refuse("eof")  # ended before it could be routed
            return True  # connecting: the EOF is passed on once connected
        if upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        if self.eof_from_upstream:
            self._close()
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.table is None:
            return  # refused before it was counted
        if not self.closed:
            self.closed = True
        self._flush_counts()
        self.listener.active -= 1
        rt = self.rt
        rt.stats.active_connections -= 1
        rt.connection_closed(self)
        self.transport = None
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.close()

    # The client reads slower than the backend sends: stop reading the backend.
    def pause_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.resume_reading()

    def pause_client(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_client(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- upstream ------------------------------------------------------------------------

    def _start(self, route: L4Route | None) -> None:
        if route is None:
            self._refuse("no_route")
            return
        self.route = route
        cluster, backend = route.choose()
        self.backend = backend
        self.rt.stats.l4_count("connections", route.label, backend)
        if cluster is None or not cluster.endpoints:
            self._refuse("no_backend")
            return
        assert self.transport is not None
        self.transport.pause_reading()  # until connected: the kernel buffers the rest
        # Connecting is a coroutine; the task ends when the pipe starts.
        self.rt.loop.create_task(self._connect(cluster))

    async def _connect(self, cluster: Cluster) -> None:
        rt = self.rt
        failed: Endpoint | None = None
        for _attempt in range(2):  # the chosen endpoint, then one other
            endpoint = _pick(cluster, failed)
            if endpoint is None or self.closed:
                break
            try:
                async with asyncio.timeout(cluster.connect_timeout):
                    transport = await self._open(endpoint)
            except (OSError, TimeoutError) as exc:
                rt.stats.connect_error(cluster.label)
                _observe(rt, cluster, endpoint, ok=False)
                log.debug("L4 connect to %s failed: %r", endpoint.key, exc)
                failed = endpoint
                continue
            _observe(rt, cluster, endpoint, ok=True)
            self._connected(transport)
            return
        self._refuse("connect_failed")

    async def _open(self, endpoint: Endpoint) -> asyncio.Transport:
        loop = self.rt.loop
        factory = cast("Callable[[], asyncio.Protocol]", partial(_upstream_factory, self))
        addr = endpoint.address
        if addr.is_unix:
            transport, _ = await loop.create_unix_connection(factory, addr.path)
            return transport
        if endpoint.pool.is_ip:
            targets = [(addr.host, addr.port)]
        else:
            targets = await self.rt.resolver.resolve(addr.host, addr.port)
        last: OSError | None = None
        for host, port in targets:
            try:
                transport, _ = await loop.create_connection(factory, host, port)
                return transport
            except OSError as exc:
                last = exc
        assert last is not None
        raise last

    def _connected(self, transport: asyncio.Transport) -> None:
        upstream = cast(L4Upstream, transport.get_protocol())
        if self.closed:
            transport.close()  # the client left while we were connecting
            return
        self.upstream = upstream
        pending, self.pending = self.pending, []
        for chunk in pending:
            self.up_bytes += len(chunk)
            transport.write(chunk)
        if self.eof_from_client:
            if transport.can_write_eof():
                transport.write_eof()
        elif self.transport is not None:
            self.transport.resume_reading()

    def upstream_eof(self) -> None:
        self.eof_from_upstream = True
        tr = self.transport
        if tr is not None and not self.closed and tr.can_write_eof():
            tr.write_eof()
        if self.eof_from_client:
            self._close()

    def upstream_lost(self) -> None:
        if not self.closed:
            self._close()

    # -- ending --------------------------------------------------------------------------

    def _refuse(self, reason: str) -> None:
        table = self.table
        if table is not None:
            self.rt.stats.l4_count("refused", f"{table.gateway}/{table.listener}", reason)
        self._close()

    def _close(self) -> None:
        """Close both sides; ``close`` sends what is still buffered first."""
        self.closed = True
        self.hello = None
        if self.transport is not None:
            self.transport.close()
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.close()

    def _flush_counts(self) -> None:
        route = self.route
        if route is None:
            return
        stats = self.rt.stats
        if self.up_bytes:
            stats.l4_count("bytes", route.label, "upstream", self.up_bytes)
            self.up_bytes = 0
        if self.down_bytes:
            stats.l4_count("bytes", route.label, "downstream", self.down_bytes)
            self.down_bytes = 0

    def sweep(self, now: float) -> None:
        self._flush_counts()
        if self.closed:
            return
        if self.hello is not None:
            if now >= self.last_active:
                self._refuse("client_hello_timeout")
            return
        if self.busy:
            self.busy = False
            self.last_active = now
        elif self.upstream is not None and now - self.last_active >= self.idle_timeout:
            self._refuse("idle_timeout")

    def drain(self) -> None:
        # Open pipes carry on until the drain grace ends; unrouted connections go now.
        if self.hello is not None:
            self._refuse("draining")


def _upstream_factory(down: L4Transport) -> L4Upstream:
    return L4Upstream(down)


def _pick(cluster: Cluster, failed: Endpoint | None) -> Endpoint | None:
    """The balancer's endpoint; on the retry one other than ``failed`` when any is up."""
    now = perf_counter()
    endpoint = cluster.single or cluster.balancer.pick(0, now)
    if failed is None or endpoint is not failed:
        return endpoint
    for other in cluster.endpoints:
        if other is not failed and other.health.available(now):
            return other
    return None


def _observe(rt: Runtime, cluster: Cluster, endpoint: Endpoint, *, ok: bool) -> None:
    """Connect outcomes feed outlier detection (a failed connect is a gateway error)."""
    outlier = cluster.outlier
    if outlier is not None and outlier.on_response(
        endpoint.health, 200 if ok else 0, perf_counter(), len(cluster.endpoints)
    ):
        rt.stats.event(cluster.label, "ejection")
