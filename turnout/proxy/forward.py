"""The upstream side of one exchange: connections, the event flow, per-try timers.

A ``Forwarder`` is made by the ``Exchange`` (``streams.py``) once the request's filters
have passed and a backendRef is chosen; it is the only thing that touches upstream
connections. It derives from ``attempts.Attempts`` (admission, endpoint choice, retry
decisions, outcome accounting). The two sides talk through a small protocol-neutral
interface:

* going up (exchange → forwarder): ``admit`` (circuit breaker, endpoint), ``send`` (the
  body buffered so far; take a pooled connection or start connecting), ``request_body``
  / ``request_end`` for later chunks and trailers, ``tunnel_write`` after ``101``,
  ``set_reading`` (client backpressure), ``stop`` (reset: the exchange answered or the
  client left), ``timed_out`` (a whole-request timer), ``check_connect`` (the sweeper's
  connect timeout), ``finish`` (count the outcome);
* coming back (``attempts.UpstreamSink``): the response head, body chunks, end with
  trailers, a protocol switch and tunnel bytes, and failure — ``upstream_failed`` before
  the response head (the exchange answers 502/503/504 itself), ``upstream_broken`` after
  it (the client connection is aborted so a truncated body never looks complete).

The forwarder is the ``UpstreamOwner`` of its connection: the codec reports parsed
events to it and it relays them after its own decisions (retry on a status, protocol
switch, per-try timer). A reused pooled connection that dies before any response byte
gets one free retry on a fresh connection for idempotent requests without a body.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from turnout.core.tasks import spawn
from turnout.proxy.attempts import Attempts, UpstreamSink
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.upstream.breaker import MAX_CONNECTIONS, MAX_PENDING
from turnout.proxy.upstream.errors import ResolutionError

if TYPE_CHECKING:
    from turnout.proxy.runtime import Runtime
    from turnout.proxy.snapshot.tables import BackendChoice, Cluster
    from turnout.proxy.upstream.connection import UpstreamConnection
    from turnout.proxy.upstream.endpoints import Endpoint
    from turnout.proxy.upstream.pool import EndpointPool

IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
BUFFER_LIMIT: Final = 256 * 1024

# Upstream connects in flight, held until they end (the loop keeps weak references only).
_CONNECTING: set[asyncio.Task[Any]] = set()


class Forwarder(Attempts):
    """One request's upstream side, possibly over several attempts."""

    __slots__ = (
        "backend_timeout",
        "backend_timer",
        "connect_started",
        "connecting",
        "pending_counted",
        "progress",
        "request_done",
        "retried",
        "scheme",
        "trailers",
        "tunnel",
        "upstream",
    )

    def __init__(
        self,
        rt: Runtime,
        sink: UpstreamSink,
        head: RequestHead,
        choice: BackendChoice,
        cluster: Cluster,
        backend_timeout: float,
        client_ip: bytes,
        scheme: bytes,
    ) -> None:
        super().__init__(rt, sink, head, choice, cluster, client_ip)
        self.backend_timeout = backend_timeout
        self.scheme = scheme
        self.upstream: UpstreamConnection | None = None
        self.connecting: asyncio.Task[UpstreamConnection] | None = None
        self.request_done = False
        self.trailers: Headers | None = None  # the request's, until sent upstream
        self.tunnel = False
        self.retried = False  # the free stale-connection retry was used
        self.backend_timer: asyncio.TimerHandle | None = None
        self.progress = 0  # bumped per response event (the exchange's sweeper reads it)
        self.pending_counted = False  # counted in the backend's pending (connecting) requests
        self.connect_started = 0.0

    # -- going up (called by the exchange) ------------------------------------------------

    def send(
        self,
        pending: list[bytes] | None,
        pending_size: int,
        request_done: bool,
        trailers: Headers | None,
    ) -> None:
        """Admitted: go with the body received so far (``pending``)."""
        self.pending = pending
        self.pending_size = pending_size
        self.request_done = request_done
        self.trailers = trailers
        endpoint = self.endpoint
        assert endpoint is not None
        self._go(endpoint)

    def _go(self, endpoint: Endpoint) -> None:
        trace = self.trace
        if trace is not None:
            address = endpoint.address
            trace.attempt(
                self.head.headers, endpoint.key, address.host, address.port, perf_counter()
            )
        conn = endpoint.pool.take_idle()
        if conn is not None:
            self._attach(conn)
        else:
            self._connect(endpoint.pool)

    def _abandon_attempt(self) -> None:
        self._drop()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        self._cancel_backend_timer()

    def request_body(self, data: bytes, answered: bool) -> None:
        """A body chunk (``answered``: the exchange replied already; keep nothing)."""
        if self.replay is not None:
            self._capture(data)
        conn = self.upstream
        if conn is not None and self.pending is None:
            conn.send_body(data)
            return
        if answered:
            return
        pending = self.pending
        if pending is None:
            pending = self.pending = []
        pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > BUFFER_LIMIT:
            self.sink.request_buffer_full(True)

    def request_end(self, trailers: Headers | None) -> None:
        self.request_done = True
        self.trailers = trailers  # kept for a connection made later (or a retry)
        conn = self.upstream
        if conn is not None and self.pending is None:
            conn.send_end(trailers)

    def tunnel_write(self, data: bytes) -> None:
        conn = self.upstream
        if conn is not None:
            conn.write(data)

    def set_reading(self, on: bool) -> None:
        if self.upstream is not None:
            self.upstream.set_reading(on)

    def cancel_timers(self) -> None:
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        if self.backend_timer is not None:
            self.backend_timer.cancel()
            self.backend_timer = None

    def stop(self) -> None:
        """Reset: no more attempts, drop the connect in flight and the connection."""
        self.done = True
        self.replay = None
        self.cancel_timers()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        self._drop()

    def timed_out(self) -> None:
        """A whole-request timer fired: counts against the backend, then stop."""
        self.gateway_error = True
        self.stop()

    def check_connect(self, now: float) -> bool:
        """The sweeper's tick: True when the connect took too long (answered 504)."""
        connecting = self.connecting
        if connecting is None or now - self.connect_started <= self.cluster.connect_timeout:
            return False
        connecting.cancel()
        self.connecting = None
        self.gateway_error = True
        self.rt.stats.connect_error(self.choice.label)
        self.sink.upstream_failed(
            504, b"upstream_connect_timeout", b"connecting to the upstream timed out", None
        )
        self.sink.flush()
        return True

    # -- endpoint choice and connections -------------------------------------------------

    def _connect(self, pool: EndpointPool) -> None:
        cluster = self.cluster
        guard = cluster.guard
        if guard.pending >= guard.max_pending:
            self._overflow(MAX_PENDING)
            return
        if guard.max_connections < 1 << 30:
            open_now = 0
            for ep in cluster.endpoints:
                open_now += ep.pool.open_count
            if open_now >= guard.max_connections:
                self._overflow(MAX_CONNECTIONS)
                return
        guard.pending += 1
        self.pending_counted = True
        self.connect_started = perf_counter()  # after a fault delay or a back-off
        task = spawn(pool.open(), loop=self.rt.loop, keep=_CONNECTING)
        self.connecting = task
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[UpstreamConnection]) -> None:
        if self.pending_counted:
            self.pending_counted = False
            self.cluster.guard.pending -= 1
        if task is not self.connecting:
            if not task.cancelled() and task.exception() is None:
                task.result().close()  # we gave up on this attempt (timeout / client gone)
            return
        self.connecting = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._connect_failed(exc)
        else:
            self._attach(task.result())
        self.sink.flush()

    def _connect_failed(self, exc: BaseException) -> None:
        self.gateway_error = True
        self.rt.stats.connect_error(self.choice.label)
        policy = self.policy
        if policy is not None and policy.on_connect and self._may_retry():
            self._retry(0, "connect failed")
            return
        if self.attempt:
            self._exhausted(b"cannot connect to the upstream")
        elif isinstance(exc, ResolutionError):
            message = str(exc).encode("utf-8", "replace")
            self.sink.upstream_failed(503, b"upstream_unresolvable", message, None)
        else:
            self.sink.upstream_failed(
                502, b"upstream_connect_failed", b"cannot connect to the upstream", None
            )

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        head = self.head
        conn.attach(self, head.method == b"HEAD")
        if head.expect_continue and not self.request_done and not self.attempt:
            self.sink.continue_request()
        pending = self.pending
        self.pending = None
        conn.send_request(
            head, self.client_ip, self.scheme, pending, self.request_done, self.trailers
        )
        if pending:
            self.pending_size = 0
            self.sink.request_buffer_full(False)
        timeout = self.backend_timeout
        policy = self.policy
        if policy is not None and policy.per_try_timeout:
            timeout = policy.per_try_timeout
        if timeout:
            if self.backend_timer is not None:
                self.backend_timer.cancel()
            self.backend_timer = self.rt.loop.call_later(timeout, self._backend_timed_out)

    def _drop(self) -> None:
        """Give up the current connection (the rest of its response is not wanted)."""
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            conn.detach()
            conn.abort()

    def _cancel_backend_timer(self) -> None:
        if self.backend_timer is not None:
            self.backend_timer.cancel()
            self.backend_timer = None

    def _backend_timed_out(self) -> None:
        self.backend_timer = None
        policy = self.policy
        if (
            not self.started
            and policy is not None
            and (policy.on_reset or policy.on_gateway or policy.on_5xx)
            and self._may_retry()
        ):
            self.rt.stats.upstream_timeouts += 1
            self._retry(0, "timeout")
            return
        self.sink.upstream_timed_out()

    # -- coming back: the UpstreamOwner interface (events from the codec) -----------------

    def response_informational(self, head: ResponseHead) -> None:
        self.progress += 1
        self.sink.upstream_informational(head)

    def response_head(self, head: ResponseHead) -> None:
        self.progress += 1
        if self.backend_timer is not None:
            self._cancel_backend_timer()
        self.upstream_status = head.status
        policy = self.policy
        if policy is not None and policy.retry_status(head.status) and self._may_retry():
            self._retry(head.status)
            return
        if head.status == 101:
            self._switch_protocols(head)
            return
        if self.set_cookie is not None:
            head.headers.append((b"set-cookie", self.set_cookie))
        self.started = True
        self.sink.upstream_head(head)

    def response_body(self, data: bytes) -> None:
        self.progress += 1
        self.sink.upstream_body(data)

    def response_complete(self, trailers: Headers | None) -> None:
        if self.backend_timer is not None:
            self._cancel_backend_timer()
        self.done = True
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            if self.request_done:
                conn.pool.release(conn)
            else:
                conn.detach()
                conn.close()  # the request was not fully sent; the socket is out of step
        self.sink.upstream_end(trailers)

    def tunnel_data(self, data: bytes) -> None:
        self.progress += 1
        self.sink.upstream_raw(data)

    def protocol_error(self, message: str) -> None:
        self._failed(message.encode("utf-8", "replace"))

    def upstream_lost(self, conn: UpstreamConnection, exc: BaseException | None) -> None:
        if conn is not self.upstream:
            return
        if self.tunnel:
            self.upstream = None
            self.sink.upstream_broken()
            return
        if self._can_retry(conn):
            self.retried = True
            self.upstream = None
            assert self.endpoint is not None
            self._connect(self.endpoint.pool)
            return
        self._failed(b"upstream closed the connection")

    def upstream_writable(self, writable: bool) -> None:
        self.sink.upstream_writable(writable)

    def flush(self) -> None:
        self.sink.flush()

    def _switch_protocols(self, head: ResponseHead) -> None:
        req = self.head
        if req.upgrade is None or head.upgrade != req.upgrade:
            self._failed(b"upstream switched protocols unasked")
            return
        if req.upgrade == b"websocket" and head.get(b"sec-websocket-accept") is None:
            self._failed(b"upstream websocket handshake is invalid")
            return
        self.cancel_timers()
        self.started = True
        self.tunnel = True
        self.sink.upstream_switched(head)

    def _can_retry(self, conn: UpstreamConnection) -> bool:
        """The free retry of a request that met a stale pooled connection (when no retry
        policy covers resets: then the policy's attempts count it, as Envoy does)."""
        head = self.head
        policy = self.policy
        return (
            not self.retried
            and (policy is None or not policy.on_reset)
            and conn.requests > 1
            and not conn.received_any
            and not self.started
            and head.method in IDEMPOTENT
            and not head.has_body
            and head.upgrade is None
        )

    def _failed(self, reason: bytes) -> None:
        self.gateway_error = True
        policy = self.policy
        if not self.started and policy is not None and policy.on_reset and self._may_retry():
            self._retry(0, reason.decode("utf-8", "replace"))
            return
        self._drop()
        if self.started:
            self.sink.upstream_broken()
        elif self.attempt:
            self._exhausted(reason)
        else:
            self.sink.upstream_failed(502, b"upstream_error", reason, None)
