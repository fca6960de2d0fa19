"""One request/response exchange: route, filter, forward, stream back (the HCM analogue).

An ``Exchange`` is created per request by a downstream transport and talks to it only
through the protocol-neutral ``Downstream`` interface, so it never branches on the HTTP
version of the client. Upstream, it owns one ``UpstreamConnection`` at a time and
receives that connection's parsed events directly.

Life of an exchange:

1. ``start``: route (one snapshot read), apply the rule's filters, pick a backendRef
   by weight and an endpoint by the balancer, render the upstream request head, and take
   an idle pooled connection or start connecting.
2. Request body chunks are re-framed and forwarded as they arrive; before a connection
   exists they are buffered up to ``BUFFER_LIMIT``, then the client is paused.
3. Response events are forwarded; backpressure couples the two sockets both ways
   (a full client socket pauses upstream reads and vice versa).
4. When both directions are complete the upstream connection goes back to its pool, the
   outcome is counted and logged, and the downstream may start the next request.

Failures before the response head answer 502/503/504 with a small JSON body; after it,
the client connection is aborted so a truncated body never looks complete. A reused
pooled connection that dies before any response byte gets one retry on a fresh
connection for idempotent requests without a body.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from random import random
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, Protocol

from turnout.core.tasks import spawn
from turnout.observe.stats import LATENCY_BOUNDS
from turnout.proxy.filters.base import PROCEED, BodyTap, FilterContext, LocalReply
from turnout.proxy.protocols.grpc import CONTENT_TYPE as GRPC_CONTENT_TYPE
from turnout.proxy.protocols.grpc import error_trailers, is_grpc, parse_timeout
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.http1_client import render_request
from turnout.proxy.protocols.http1_wire import chunk, last_chunk
from turnout.proxy.routing.keys import FROM_COOKIE, FROM_QUERY, find_key, preview_cookie
from turnout.proxy.runtime import Runtime
from turnout.proxy.snapshot.tables import HASH_COOKIE, HASH_HEADER, HASH_SOURCE_IP
from turnout.proxy.upstream.affinity import (
    NO_KEY,
    cookie_value,
    key_of,
    new_cookie_value,
    query_value,
    set_cookie,
)
from turnout.proxy.upstream.breaker import MAX_CONNECTIONS, MAX_PENDING
from turnout.proxy.upstream.errors import ResolutionError
from turnout.proxy.upstream.pool import EndpointPool
from turnout.proxy.upstream.retry import RetryPolicy

if TYPE_CHECKING:
    from turnout.observe.stats import RouteStats
    from turnout.proxy.filters.base import ResponseFilter
    from turnout.proxy.routing.table import PortTable
    from turnout.proxy.snapshot.tables import BackendChoice, Cluster, RouteAction
    from turnout.proxy.upstream.connection import UpstreamConnection
    from turnout.proxy.upstream.endpoints import Endpoint

IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
BUFFER_LIMIT: Final = 256 * 1024
# Request bodies up to this size are kept for retries; a larger one is not retried.
REPLAY_LIMIT: Final = 64 * 1024

# Reasons a downstream stops reading (a bitmask, so independent causes do not collide).
PAUSE_UPSTREAM: Final = 1
PAUSE_BUFFER: Final = 2


class Downstream(Protocol):
    scheme: bytes
    client_ip: bytes
    client_json: bytes
    tls_listener: tuple[str, str] | None  # (gateway, listener) the TLS handshake chose
    client_cert: bytes | None  # x-forwarded-client-cert of a verified client certificate

    def send_response(self, head: ResponseHead, request: RequestHead) -> None: ...
    def send_body(self, data: bytes) -> None: ...
    def end_response(self, trailers: Headers | None) -> None: ...
    def send_continue(self) -> None: ...
    def abort(self) -> None: ...
    def set_reading(self, reason: int, on: bool) -> None: ...
    def exchange_finished(self, exchange: Exchange, keep_alive: bool) -> None: ...
    def open_tunnel(self) -> None: ...
    def write_raw(self, data: bytes) -> None: ...
    def flush(self) -> None: ...


_ERROR_TEMPLATE: Final = b'{"error":"%s","message":"%s","request_id":"%s"}\n'

# Upstream connects in flight, held until they end (the loop keeps weak references only).
_CONNECTING: set[asyncio.Task[Any]] = set()


class Exchange:
    __slots__ = (
        "action",
        "attempt",
        "backend_timer",
        "bytes_in",
        "bytes_out",
        "choice",
        "connect_started",
        "connecting",
        "ctx",
        "down",
        "endpoint",
        "finished",
        "gateway_error",
        "guarded",
        "head",
        "in_retry",
        "keep_alive",
        "key_source",
        "last_failed",
        "pending",
        "pending_counted",
        "pending_size",
        "policy",
        "progress",
        "replay",
        "replay_size",
        "request_done",
        "request_timer",
        "request_trailers",
        "response_done",
        "response_started",
        "retried",
        "retry_timer",
        "routing_key",
        "rt",
        "set_cookie",
        "stage",
        "start_time",
        "status",
        "sweep_mark",
        "taps",
        "tunnel",
        "tunnel_buffer",
        "upstream",
        "upstream_status",
    )

    def __init__(self, rt: Runtime, down: Downstream, head: RequestHead, now: float) -> None:
        self.rt = rt
        self.down = down
        self.head = head
        self.start_time = now
        self.action: RouteAction | None = None
        self.choice: BackendChoice | None = None
        self.endpoint: Endpoint | None = None
        self.upstream: UpstreamConnection | None = None
        self.connecting: asyncio.Task[UpstreamConnection] | None = None
        self.pending: list[bytes] | None = None
        self.pending_size = 0
        self.request_done = False
        self.request_trailers: Headers | None = None  # the request's, until sent upstream
        self.response_started = False
        self.response_done = False
        self.keep_alive = head.keep_alive
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.retried = False
        self.finished = False
        self.tunnel = False
        self.tunnel_buffer: list[bytes] | None = None
        self.request_timer: asyncio.TimerHandle | None = None
        self.backend_timer: asyncio.TimerHandle | None = None
        self.progress = 0  # bumped on activity; the sweeper detects a stalled stream
        self.sweep_mark = (-1, now)
        self.guarded = False  # counted in the backend's and endpoint's in-flight requests
        self.pending_counted = False  # counted in the backend's pending (connecting) requests
        self.upstream_status = 0  # the status the upstream answered (0: none)
        self.gateway_error = False  # connect failure, reset or timeout (outlier detection)
        self.set_cookie: bytes | None = None  # affinity cookie to set on the response
        self.policy: RetryPolicy | None = None  # retries beyond the stale-connection one
        self.attempt = 0  # retries made under the policy
        self.in_retry = False  # counted in the backend's retries in flight
        self.replay: list[bytes] | None = None  # the framed body sent so far, for retries
        self.replay_size = 0
        self.retry_timer: asyncio.TimerHandle | None = None
        self.last_failed: Endpoint | None = None  # a retry avoids it when it can
        self.taps: list[BodyTap] | None = None  # copies of the body (request mirrors)
        self.connect_started = now
        self.routing_key = b""  # a Sandbox / RouteGroup key in force, found in the request
        self.key_source = 0  # where it was found (routing.keys.FROM_*)
        # what the rule's filters see and where they stand (None: the rule has none)
        self.ctx: FilterContext | None = None
        self.stage = 0  # the chain being run: 0 the rule's, 1 the backendRef's

    # -- request side (called by the downstream transport) --------------------------------

    def start(self, table: PortTable[RouteAction] | None) -> None:
        head = self.head
        rid = head.request_id
        if not rid:
            rid = head.request_id = self.rt.ids.next()
        listener, cand = table.route(head) if table is not None else (None, None)
        chosen = self.down.tls_listener
        if chosen is not None and (listener is None or listener.ident != chosen):
            self.local_reply(
                421,
                b"misdirected_request",
                b"this connection was made for another host (TLS server name)",
            )
            return
        if table is not None and table.keys:
            key, source = find_key(head)
            if key in table.keys:
                self.routing_key = key
                self.key_source = source
        if cand is None:
            self.local_reply(404, b"no_route", b"no route matches this request")
            return
        action = self.action = cand.action
        timeout = action.request_timeout or self.rt.settings.request_timeout
        grpc_timeout = head.received.get(b"grpc-timeout")
        if grpc_timeout is not None:  # only gRPC calls pay for the parse (an interpreted call)
            deadline = parse_timeout(grpc_timeout)
            if deadline is not None and (not timeout or deadline < timeout):
                timeout = deadline or 1e-3  # the client's deadline for the call
        if timeout:
            self.request_timer = self.rt.loop.call_later(timeout, self._request_timed_out)
        if action.needs_context:
            assert listener is not None
            ctx = self.ctx = FilterContext(
                self,
                head,
                self.rt.loop,
                self.down.client_ip,
                self.down.client_cert,
                action.route_label,
                action.route_json,
                cand.prefix,
                listener.scheme,
                listener.port,
                self.start_time,
            )
            if action.request_filters and ctx.run(action.request_filters) != PROCEED:
                return  # answered, or suspended: ``filters_passed`` goes on
        self._choose()

    # -- the filter chains' host (filters/base.py) -------------------------------------

    def filters_passed(self) -> None:
        """A suspended chain finished: go on from where it stopped."""
        if self.stage == 0:
            self._choose()
        else:
            self._forward()

    def filter_answered(self, reply: LocalReply) -> None:
        self.local_reply(reply.status, reply.code, reply.message, reply.headers)

    # -- backend choice and forwarding ------------------------------------------------

    def _choose(self) -> None:
        """Past the rule's filters: pick the backendRef and run its own filters."""
        action = self.action
        assert action is not None
        head = self.head
        choice = self.choice = action.single or action.choose()
        if choice is None:
            self.local_reply(500, b"backend_not_found", b"the route has no valid backend")
            return
        key = self.routing_key
        if key and choice.overrides is not None:
            choice = self.choice = choice.overrides.get(key, choice)
        if b"x-forwarded-client-cert" in head.received:
            # Only the gateway vouches for client certificates: never pass a client's claim.
            head.headers = [h for h in head.headers if h[0] != b"x-forwarded-client-cert"]
        cert = self.down.client_cert
        if cert is not None:
            head.headers.append((b"x-forwarded-client-cert", cert))
        if key and self.key_source >= FROM_COOKIE:
            # Found where services do not look: pass it on where they do.
            head.headers.append((b"baggage", b"turnout-routing-key=" + key))
            head.headers.append((b"x-turnout-routing-key", key))
        filters = choice.request_filters
        if filters:
            ctx = self.ctx
            assert ctx is not None
            ctx.backend = choice.label
            self.stage = 1
            if ctx.run(filters) != PROCEED:
                return
        self._forward()

    def _forward(self) -> None:
        """Filters done: circuit breaker, endpoint, upstream connection."""
        choice = self.choice
        action = self.action
        assert choice is not None and action is not None
        head = self.head
        cluster = choice.cluster
        if cluster is None:
            self.local_reply(500, b"backend_not_found", b"the route has no valid backend")
            return
        guard = cluster.guard
        now = self.start_time
        refused = guard.admit(now)
        if refused:
            self._overflow(cluster.label, refused)
            return
        endpoint = cluster.single
        if endpoint is None:
            endpoint = self._pick(cluster, head, now)
        self.endpoint = endpoint
        if endpoint is None:
            self.local_reply(503, b"no_endpoint", b"the backend has no available endpoint")
            return
        guard.active += 1
        endpoint.health.inflight += 1
        self.guarded = True
        policy = choice.retry
        if policy is not None and policy.retries > 0 and head.upgrade is None:
            self.policy = policy
            self.replay = []
        if action.forward_filters and head.upgrade is None:
            self._start_taps(action)
        conn = endpoint.pool.take_idle()
        if conn is not None:
            self._attach(conn)
        else:
            self._connect(endpoint.pool)

    def _start_taps(self, action: RouteAction) -> None:
        """The rule's forward filters (request mirrors): copies of the body as it goes."""
        ctx = self.ctx
        assert ctx is not None
        down = self.down
        wire_head = render_request(self.head, down.client_ip, down.scheme)
        taps: list[BodyTap] = []
        for flt in action.forward_filters:
            tap = flt.on_forward(ctx, wire_head)
            if tap is None:
                continue
            pending = self.pending
            if pending:  # body that arrived while the request waited (a fault delay)
                chunked = self.head.chunked
                for data in pending:
                    tap.body(chunk(data) if chunked else data)
            if self.request_done:
                if self.head.chunked:
                    tap.body(last_chunk(self.request_trailers))
                tap.end()
            taps.append(tap)
        if taps:
            self.taps = taps

    def _drop_taps(self) -> None:
        taps = self.taps
        if taps is not None:
            self.taps = None
            if not self.request_done:
                for tap in taps:
                    tap.abort()

    def _pick(self, cluster: Cluster, head: RequestHead, now: float) -> Endpoint | None:
        """Sticky cookie, then the balancer (with a hash key when it hashes)."""
        if cluster.sticky_name:
            token = cookie_value(head, cluster.sticky_name)
            if token is not None:
                ep = cluster.sticky_tokens.get(token)
                if ep is not None and ep.health.available(now):
                    return ep
        source = cluster.hash_source
        key = NO_KEY
        if source:
            if source == HASH_SOURCE_IP:
                key = key_of(self.down.client_ip)
            elif source == HASH_HEADER:
                key = key_of(head.get(cluster.hash_name))
            elif source == HASH_COOKIE:
                value = cookie_value(head, cluster.hash_name)
                if value is None and cluster.hash_cookie_max_age >= 0:
                    value = new_cookie_value()
                    self.set_cookie = set_cookie(
                        cluster.hash_name, value, cluster.hash_cookie_max_age
                    )
                key = key_of(value)
            else:
                key = key_of(query_value(head.query, cluster.hash_name))
        ep = cluster.balancer.pick(key, now)
        if ep is not None and cluster.sticky_name:
            self.set_cookie = cluster.sticky_cookies.get(ep.key)
        return ep

    def _overflow(self, backend: str, reason: bytes) -> None:
        """A circuit-breaker limit or an open breaker: refuse fast, say why."""
        self.rt.stats.event(backend, "overflow:" + reason.decode())
        self.local_reply(
            503,
            b"upstream_overflow",
            b"the backend is protected by a circuit breaker (" + reason + b")",
            [(b"x-turnout-circuit", reason)],
        )

    def request_body(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.progress += 1
        taps = self.taps
        if taps is not None:
            framed = chunk(data) if self.head.chunked else data  # taps get the wire bytes
            for tap in taps:
                tap.body(framed)
        if self.replay is not None:
            self._capture(data)
        conn = self.upstream
        if conn is not None and self.pending is None:
            conn.send_body(data)
            return
        if self.response_done or self.status:
            return  # already answered without the body (an error reply); discard
        pending = self.pending
        if pending is None:
            pending = self.pending = []
        pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > BUFFER_LIMIT:
            self.down.set_reading(PAUSE_BUFFER, False)

    def request_complete(self, trailers: Headers | None) -> None:
        self.request_done = True
        self.progress += 1
        if self.finished:
            return
        taps = self.taps
        if taps is not None and self.head.chunked:
            data = last_chunk(trailers)
            for tap in taps:
                tap.body(data)
        self.request_trailers = trailers  # kept for a connection made later (or a retry)
        conn = self.upstream
        if conn is not None and self.pending is None:
            conn.send_end(trailers)
        if taps is not None:
            for tap in taps:
                tap.end()
        if self.response_done:
            self._finish()

    def _capture(self, data: bytes) -> None:
        """Keep the body for a retry, up to REPLAY_LIMIT; beyond it, no more retries."""
        size = self.replay_size + len(data)
        if size > REPLAY_LIMIT:
            self.replay = None
            return
        assert self.replay is not None
        self.replay.append(data)
        self.replay_size = size

    def client_tunnel_data(self, data: bytes) -> None:
        self.progress += 1
        if self.tunnel and self.upstream is not None:
            self.upstream.write(data)
        elif self.tunnel_buffer is None:
            self.tunnel_buffer = [data]
        else:
            self.tunnel_buffer.append(data)

    def downstream_writable(self, writable: bool) -> None:
        if self.upstream is not None:
            self.upstream.set_reading(writable)

    def downstream_lost(self) -> None:
        """The client went away: drop everything for this request."""
        self._drop_taps()
        if self.ctx is not None:
            self.ctx.cancel()  # a pending filter decision: never resumed now
        self._cancel_timers()
        self.replay = None
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            conn.detach()
            conn.abort()
        if not self.response_done:
            if not self.status:
                self.status = 499  # nginx's "client closed request"
            self.response_done = self.request_done = True
            self._account()

    def abandon(self, status: int) -> None:
        """The request turned out malformed mid-body: stop, count it with ``status``."""
        if not self.response_started:
            self.status = status
        self.downstream_lost()

    # -- upstream connection ------------------------------------------------------------

    def _connect(self, pool: EndpointPool) -> None:
        choice = self.choice
        cluster = choice.cluster if choice is not None else None
        if cluster is not None:
            guard = cluster.guard
            if guard.pending >= guard.max_pending:
                self._overflow(cluster.label, MAX_PENDING)
                return
            if guard.max_connections < 1 << 30:
                open_now = 0
                for ep in cluster.endpoints:
                    open_now += ep.pool.open_count
                if open_now >= guard.max_connections:
                    self._overflow(cluster.label, MAX_CONNECTIONS)
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
            choice = self.choice
            if choice is not None and choice.cluster is not None:
                choice.cluster.guard.pending -= 1
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
        self.down.flush()

    def _connect_failed(self, exc: BaseException) -> None:
        self.gateway_error = True
        choice = self.choice
        if choice is not None:
            self.rt.stats.connect_error(choice.label)
        policy = self.policy
        if policy is not None and policy.on_connect and self._may_retry():
            self._retry(0)
            return
        if self.attempt:
            self._exhausted(b"cannot connect to the upstream")
        elif isinstance(exc, ResolutionError):
            self.local_reply(503, b"upstream_unresolvable", str(exc).encode("utf-8", "replace"))
        else:
            self.local_reply(502, b"upstream_connect_failed", b"cannot connect to the upstream")

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        head = self.head
        conn.attach(self, head.method == b"HEAD")
        if head.expect_continue and not self.request_done and not self.attempt:
            self.down.send_continue()
        pending = self.pending
        self.pending = None
        down = self.down
        conn.send_request(
            head, down.client_ip, down.scheme, pending, self.request_done, self.request_trailers
        )
        if pending:
            self.pending_size = 0
            down.set_reading(PAUSE_BUFFER, True)
        action = self.action
        timeout = action.backend_timeout if action is not None else 0.0
        policy = self.policy
        if policy is not None and policy.per_try_timeout:
            timeout = policy.per_try_timeout
        if timeout:
            if self.backend_timer is not None:
                self.backend_timer.cancel()
            self.backend_timer = self.rt.loop.call_later(timeout, self._backend_timed_out)

    # -- response side (events from the upstream codec) -------------------------------

    def response_informational(self, head: ResponseHead) -> None:
        self.progress += 1
        # 1xx other than 100/101 (e.g. 103 Early Hints): relay to the client as is.
        if not self.response_started:
            self.down.send_response(head, self.head)

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
        if self.key_source == FROM_QUERY:
            head.headers.append((b"set-cookie", preview_cookie(self.routing_key)))
        ctx = self.ctx
        if ctx is not None:
            if ctx.response_headers is not None:
                head.headers.extend(ctx.response_headers)
            choice = self.choice
            if (
                choice is not None
                and choice.response_filters
                and self._response_filters(ctx, choice.response_filters, head)
            ):
                return
        if self.head.upgrade is not None:
            # The upstream refused the upgrade: answer normally, then close, because the
            # client may already have sent bytes for the protocol it asked for.
            self.keep_alive = False
        self.status = head.status
        self.response_started = True
        self.down.send_response(head, self.head)

    def _response_filters(
        self, ctx: FilterContext, filters: tuple[ResponseFilter, ...], head: ResponseHead
    ) -> bool:
        """Run the response filters; True when one answered instead of the upstream."""
        for flt in filters:
            reply = flt.on_response(ctx, head)
            if reply is not None:
                self.upstream_status = head.status
                conn = self.upstream
                if conn is not None:
                    self.upstream = None
                    conn.detach()
                    conn.abort()  # the rest of this response is not wanted
                self.local_reply(reply.status, reply.code, reply.message, reply.headers)
                return True
        return False

    def response_body(self, data: bytes) -> None:
        self.progress += 1
        self.bytes_out += len(data)
        self.down.send_body(data)

    def response_complete(self, trailers: Headers | None) -> None:
        self.response_done = True
        if self.request_timer is not None or self.backend_timer is not None:
            self._cancel_timers()
        self.down.end_response(trailers)
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            if self.request_done:
                conn.pool.release(conn)
            else:
                conn.detach()
                conn.close()  # the request was not fully sent; the socket is out of step
        if not self.request_done:
            self.keep_alive = False  # answered before the whole request arrived
        self._finish()

    def tunnel_data(self, data: bytes) -> None:
        self.progress += 1
        self.bytes_out += len(data)
        self.down.write_raw(data)

    def protocol_error(self, message: str) -> None:
        self._upstream_failed(message.encode("utf-8", "replace"))

    def upstream_lost(self, conn: UpstreamConnection, exc: BaseException | None) -> None:
        if conn is not self.upstream:
            return
        if self.tunnel:
            self.upstream = None
            self.response_done = self.request_done = True
            self._cancel_timers()
            self.down.abort()
            self._account()
            return
        if self._can_retry(conn):
            self.retried = True
            self.upstream = None
            assert self.endpoint is not None
            self._connect(self.endpoint.pool)
            return
        self._upstream_failed(b"upstream closed the connection")

    def upstream_writable(self, writable: bool) -> None:
        self.down.set_reading(PAUSE_UPSTREAM, writable)

    def flush(self) -> None:
        self.down.flush()

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
            and not self.response_started
            and head.method in IDEMPOTENT
            and not head.has_body
            and head.upgrade is None
        )

    def _upstream_failed(self, reason: bytes) -> None:
        self.gateway_error = True
        policy = self.policy
        if (
            not self.response_started
            and policy is not None
            and policy.on_reset
            and self._may_retry()
        ):
            self._retry(0)
            return
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            conn.detach()
            conn.abort()
        if self.response_started:
            self.response_done = self.request_done = True
            self._cancel_timers()
            self.down.abort()
            self._account()
        elif self.attempt:
            self._exhausted(reason)
        else:
            self.local_reply(502, b"upstream_error", reason)

    def _switch_protocols(self, head: ResponseHead) -> None:
        req = self.head
        if req.upgrade is None or head.upgrade != req.upgrade:
            self._upstream_failed(b"upstream switched protocols unasked")
            return
        if req.upgrade == b"websocket" and head.get(b"sec-websocket-accept") is None:
            self._upstream_failed(b"upstream websocket handshake is invalid")
            return
        self._cancel_timers()
        self.status = 101
        self.response_started = True
        self.tunnel = True
        head.headers.append((b"connection", b"upgrade"))
        head.headers.append((b"upgrade", head.upgrade))
        self.down.send_response(head, req)
        self.down.open_tunnel()
        buffered = self.tunnel_buffer
        if buffered and self.upstream is not None:
            self.tunnel_buffer = None
            self.upstream.write(b"".join(buffered))

    # -- timeouts -------------------------------------------------------------------------

    def _request_timed_out(self) -> None:
        self.request_timer = None
        self._timed_out(b"request_timeout", b"the request timed out")

    def _backend_timed_out(self) -> None:
        self.backend_timer = None
        policy = self.policy
        if (
            not self.response_started
            and policy is not None
            and (policy.on_reset or policy.on_gateway or policy.on_5xx)
            and self._may_retry()
        ):
            self.rt.stats.upstream_timeouts += 1
            self._retry(0)
            return
        self._timed_out(b"backend_timeout", b"the backend did not answer in time")

    def _timed_out(self, code: bytes, message: bytes) -> None:
        if self.response_done:
            return
        self.gateway_error = True
        self.rt.stats.upstream_timeouts += 1
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            conn.detach()
            conn.abort()
        if self.response_started:
            self.response_done = self.request_done = True
            self._cancel_timers()
            self.down.abort()
            self._account()
        else:
            self.local_reply(504, code, message)
        self.down.flush()

    def sweep(self, now: float, stream_idle: float) -> None:
        """Called by the downstream once a second: connect timeout and stalled streams."""
        if self.response_done:
            return
        mark, since = self.sweep_mark
        if mark != self.progress:
            self.sweep_mark = (self.progress, now)
            since = now
        choice = self.choice
        cluster = choice.cluster if choice is not None else None
        connecting = self.connecting
        if (
            connecting is not None
            and cluster is not None
            and choice is not None
            and (now - self.connect_started > cluster.connect_timeout)
        ):
            connecting.cancel()
            self.connecting = None
            self.gateway_error = True
            self.rt.stats.connect_error(choice.label)
            self.local_reply(
                504, b"upstream_connect_timeout", b"connecting to the upstream timed out"
            )
            self.down.flush()
            return
        if stream_idle and now - since > stream_idle and not self.tunnel:
            self._timed_out(b"stream_idle_timeout", b"no data was exchanged for too long")

    def _cancel_backend_timer(self) -> None:
        if self.backend_timer is not None:
            self.backend_timer.cancel()
            self.backend_timer = None

    def _cancel_timers(self) -> None:
        if self.request_timer is not None:
            self.request_timer.cancel()
            self.request_timer = None
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        self._cancel_backend_timer()

    # -- completion -----------------------------------------------------------------------

    def local_reply(
        self,
        status: int,
        code: bytes,
        message: bytes,
        extra: Headers | None = None,
    ) -> None:
        """Answer from the gateway itself (errors, redirects)."""
        if self.response_started or self.response_done:
            return
        self.status = status
        self.pending = None
        if code and is_grpc(self.head):
            self._grpc_reply(status, message, extra)
            return
        if code:
            body = _ERROR_TEMPLATE % (code, message.replace(b'"', b"'"), self.head.request_id)
            headers: Headers = [(b"content-type", b"application/json")]
        else:
            body = b""
            headers = []
        if extra:
            headers.extend(extra)
        headers.append((b"x-request-id", self.head.request_id))
        head = ResponseHead(status, headers)
        head.content_length = len(body)
        if not self.request_done:
            self.keep_alive = False  # the rest of the request body will not be read
        self.response_started = True
        self.down.send_response(head, self.head)
        if body and self.head.method != b"HEAD":
            self.down.send_body(body)
        self.bytes_out += len(body)
        self.response_done = True
        self._cancel_timers()
        self.down.end_response(None)
        self._finish()

    def _grpc_reply(self, status: int, message: bytes, extra: Headers | None) -> None:
        """A gateway error as gRPC clients read it: HTTP 200, no message, and the status
        in the trailers (see protocols.grpc); ``status`` stays the logged status."""
        headers: Headers = [(b"content-type", GRPC_CONTENT_TYPE)]
        if extra:
            headers.extend(extra)
        headers.append((b"x-request-id", self.head.request_id))
        head = ResponseHead(200, headers)
        if not self.request_done:
            self.keep_alive = False
        self.response_started = True
        self.down.send_response(head, self.head)
        self.response_done = True
        self._cancel_timers()
        self.down.end_response(error_trailers(status, message))
        self._finish()

    def _finish(self) -> None:
        if self.tunnel or self.finished:
            return  # a tunnel finishes when either side closes
        self._account()
        self.down.exchange_finished(self, self.keep_alive and not self.rt.draining)

    def _release_guard(self, now: float) -> None:
        """Leave the in-flight counts; feed the outcome to the breaker and outlier detector."""
        self.guarded = False
        endpoint = self.endpoint
        choice = self.choice
        cluster = choice.cluster if choice is not None else None
        if cluster is None:
            return
        guard = cluster.guard
        guard.active -= 1
        if self.in_retry:
            self.in_retry = False
            guard.retries -= 1
        if endpoint is None:
            return  # between two attempts: the last one was counted already
        if self.upstream_status:
            outcome = self.upstream_status
        elif self.gateway_error:
            outcome = 0
        else:
            # the client left or the request was refused: says nothing of the backend
            endpoint.health.inflight -= 1
            return
        self._attempt_outcome(endpoint, cluster, outcome, now)

    def _attempt_outcome(
        self, endpoint: Endpoint, cluster: Cluster, outcome: int, now: float
    ) -> None:
        """One attempt on ``endpoint`` ended with ``outcome`` (a status, 0 = gateway error)."""
        endpoint.health.inflight -= 1
        cluster.guard.record(0 < outcome < 500, now)
        detector = cluster.outlier
        if detector is not None and detector.on_response(
            endpoint.health, outcome, now, len(cluster.endpoints)
        ):
            self.rt.stats.event(cluster.label, "ejection")

    # -- retries --------------------------------------------------------------------------

    def _may_retry(self) -> bool:
        policy = self.policy
        if (
            policy is None
            or self.replay is None
            or self.attempt >= policy.retries
            or self.response_started
            or self.finished
            or self.tunnel
        ):
            return False
        choice = self.choice
        cluster = choice.cluster if choice is not None else None
        if cluster is None:
            return False
        guard = cluster.guard
        if not self.in_retry and (
            guard.retries >= guard.max_retries or guard.retries >= policy.budget(guard.active)
        ):
            self.rt.stats.event(cluster.label, "overflow:retry-budget")
            return False
        return True

    def _retry(self, status: int) -> None:
        """Give up the current attempt (``status``: what it answered, 0 = failed) and try
        again after the back-off, on another endpoint when there is one."""
        choice = self.choice
        cluster = choice.cluster if choice is not None else None
        endpoint = self.endpoint
        policy = self.policy
        assert cluster is not None and endpoint is not None and policy is not None
        now = perf_counter()
        self._attempt_outcome(endpoint, cluster, status, now)
        self.last_failed = endpoint
        self.endpoint = None
        self.attempt += 1
        self.rt.stats.event(cluster.label, "retry")
        if not self.in_retry:
            self.in_retry = True
            cluster.guard.retries += 1
        self.upstream_status = 0
        self.gateway_error = False
        self.pending = None
        self.pending_size = 0
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            conn.detach()
            conn.abort()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        self._cancel_backend_timer()
        delay = policy.backoff(self.attempt, random())
        self.retry_timer = self.rt.loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self.retry_timer = None
        if self.finished or self.response_done:
            return
        choice = self.choice
        cluster = choice.cluster if choice is not None else None
        assert cluster is not None
        now = perf_counter()
        failed = self.last_failed
        endpoint = cluster.single
        if endpoint is None:
            endpoint = cluster.balancer.pick(NO_KEY, now)
            # A different endpoint when the balancer has one to offer.
            for _ in range(2):
                if endpoint is None or endpoint is not failed:
                    break
                endpoint = cluster.balancer.pick(NO_KEY, now)
        if endpoint is None:
            self.endpoint = None
            self.local_reply(503, b"no_endpoint", b"the backend has no available endpoint")
            self.down.flush()
            return
        self.endpoint = endpoint
        endpoint.health.inflight += 1
        replay = self.replay
        if replay:
            self.pending = list(replay)
            self.pending_size = self.replay_size
        conn = endpoint.pool.take_idle()
        if conn is not None:
            self._attach(conn)
        else:
            self._connect(endpoint.pool)
        self.down.flush()

    def _exhausted(self, reason: bytes) -> None:
        self.local_reply(
            503,
            b"upstream_unavailable",
            b"all %d attempts failed; the last: %s" % (self.attempt + 1, reason),
        )

    def _remember(self, duration: float) -> None:
        """Keep this request in its routing key's history (shipped with the stats)."""
        head = self.head
        action = self.action
        choice = self.choice
        endpoint = self.endpoint
        self.rt.stats.remember(
            (
                self.routing_key.decode("ascii"),
                self.rt.wall_offset + self.start_time,
                round(duration * 1000.0, 3),
                head.method.decode("latin-1"),
                head.target.decode("latin-1"),
                action.route_label if action is not None else "",
                choice.cluster.label if choice is not None and choice.cluster is not None else "",
                endpoint.key if endpoint is not None else "",
                self.status,
                head.request_id.decode("latin-1"),
            )
        )

    def _account(self) -> None:
        if self.finished:
            return
        if self.taps is not None:
            self._drop_taps()
        ctx = self.ctx
        if ctx is not None:
            # Cancel a pending decision, and break the exchange <-> context cycle so both
            # are freed by reference counting, not left to the cyclic collector.
            self.ctx = None
            ctx.cancel()
        self.finished = True
        rt = self.rt
        now = perf_counter()
        duration = now - self.start_time
        choice = self.choice
        cell: RouteStats
        if choice is not None:
            cell = choice.stats
        elif self.action is not None:
            cell = self.action.stats
        else:
            cell = rt.no_route
        status = self.status
        cell.codes[status // 100 if status < 600 else 5] += 1
        cell.buckets[bisect_left(LATENCY_BOUNDS, duration)] += 1
        cell.sum += duration
        if self.guarded:
            self._release_guard(now)
        if self.routing_key:
            self._remember(duration)
        log = rt.access_log
        if log is not None:
            head = self.head
            action = self.action
            endpoint = self.endpoint
            log.record(
                (
                    rt.wall_offset + self.start_time,
                    duration,
                    head.method,
                    head.target,
                    head.original_authority,
                    status,
                    self.bytes_out,
                    self.bytes_in,
                    action.route_json if action is not None else b"null",
                    choice.label_json if choice is not None else b"null",
                    endpoint.pool.key_json if endpoint is not None else b"null",
                    head.request_id,
                    self.down.client_json,
                    head.get(b"user-agent") if log.wants_user_agent else None,
                )
            )
