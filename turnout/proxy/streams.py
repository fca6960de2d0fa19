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
from time import perf_counter
from typing import TYPE_CHECKING, Final, Protocol

from turnout.observe.stats import LATENCY_BOUNDS
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.http1_wire import chunk, last_chunk
from turnout.proxy.runtime import Runtime
from turnout.proxy.upstream.errors import ResolutionError
from turnout.proxy.upstream.pool import EndpointPool

if TYPE_CHECKING:
    from turnout.observe.stats import RouteStats
    from turnout.proxy.routing.table import PortTable
    from turnout.proxy.snapshot import BackendChoice, RouteAction
    from turnout.proxy.upstream.connection import UpstreamConnection
    from turnout.proxy.upstream.endpoints import Endpoint

IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
BUFFER_LIMIT: Final = 256 * 1024

# Reasons a downstream stops reading (a bitmask, so independent causes do not collide).
PAUSE_UPSTREAM: Final = 1
PAUSE_BUFFER: Final = 2


class Downstream(Protocol):
    scheme: bytes
    client_ip: bytes
    client_json: bytes

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
# method, target, host, headers, x-forwarded-for, -proto, -host, x-request-id, framing
_REQUEST_HEAD: Final = (
    b"%s %s HTTP/1.1\r\nhost: %s\r\n%sx-forwarded-for: %s\r\nx-forwarded-proto: %s\r\n"
    b"x-forwarded-host: %s\r\nx-request-id: %s\r\n%s\r\n"
)


class Exchange:
    __slots__ = (
        "action",
        "backend_timer",
        "bytes_in",
        "bytes_out",
        "choice",
        "connecting",
        "down",
        "endpoint",
        "finished",
        "head",
        "head_bytes",
        "keep_alive",
        "pending",
        "pending_size",
        "progress",
        "request_done",
        "request_timer",
        "response_done",
        "response_started",
        "retried",
        "rt",
        "start_time",
        "status",
        "sweep_mark",
        "tunnel",
        "tunnel_buffer",
        "upstream",
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
        self.head_bytes = b""
        self.pending: list[bytes] | None = None
        self.pending_size = 0
        self.request_done = False
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

    # -- request side (called by the downstream transport) --------------------------------

    def start(self, table: PortTable[RouteAction] | None) -> None:
        head = self.head
        rid = head.request_id
        if not rid:
            rid = head.request_id = self.rt.ids.next()
        listener, cand = table.route(head) if table is not None else (None, None)
        if cand is None:
            self.local_reply(404, b"no_route", b"no route matches this request")
            return
        action = self.action = cand.action
        timeout = action.request_timeout or self.rt.settings.request_timeout
        if timeout:
            self.request_timer = self.rt.loop.call_later(timeout, self._request_timed_out)
        redirect = action.redirect
        if redirect is not None:
            assert listener is not None
            location = redirect.location(head, listener.scheme, listener.port, cand.prefix)
            self.local_reply(redirect.status, b"", b"", [(b"location", location)])
            return
        if action.request_mod is not None:
            action.request_mod.apply_request(head)
        if action.rewrite is not None:
            action.rewrite.apply(head, cand.prefix)
        choice = self.choice = action.single or action.choose()
        if choice is None:
            self.local_reply(500, b"backend_not_found", b"the route has no valid backend")
            return
        if choice.redirect is not None:
            assert listener is not None
            location = choice.redirect.location(head, listener.scheme, listener.port, cand.prefix)
            self.local_reply(choice.redirect.status, b"", b"", [(b"location", location)])
            return
        if choice.cluster is None:
            self.local_reply(500, b"backend_not_found", b"the route has no valid backend")
            return
        if choice.request_mod is not None:
            choice.request_mod.apply_request(head)
        if choice.rewrite is not None:
            choice.rewrite.apply(head, cand.prefix)
        cluster = choice.cluster
        endpoint = self.endpoint = cluster.single or cluster.balancer.pick()
        if endpoint is None:
            self.local_reply(503, b"no_endpoint", b"the backend has no available endpoint")
            return
        self.head_bytes = self._render_head(head, rid)
        conn = endpoint.pool.take_idle()
        if conn is not None:
            self._attach(conn)
        else:
            self._connect(endpoint.pool)

    def request_body(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.progress += 1
        if self.head.chunked:
            data = chunk(data)
        conn = self.upstream
        if conn is not None and self.pending is None:
            conn.write(data)
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
        if self.head.chunked and not self.status_is_local():
            data = last_chunk(trailers)
            conn = self.upstream
            if conn is not None and self.pending is None:
                conn.write(data)
            else:
                if self.pending is None:
                    self.pending = []
                self.pending.append(data)
        if self.response_done:
            self._finish()

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
        self._cancel_timers()
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

    def status_is_local(self) -> bool:
        return self.upstream is None and self.connecting is None and bool(self.status)

    # -- upstream connection ------------------------------------------------------------

    def _connect(self, pool: EndpointPool) -> None:
        task = self.rt.loop.create_task(pool.open())
        self.connecting = task
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[UpstreamConnection]) -> None:
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
        choice = self.choice
        if choice is not None:
            self.rt.stats.connect_error(choice.label)
        if isinstance(exc, ResolutionError):
            self.local_reply(503, b"upstream_unresolvable", str(exc).encode("utf-8", "replace"))
        else:
            self.local_reply(502, b"upstream_connect_failed", b"cannot connect to the upstream")

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        head = self.head
        conn.attach(self, head.method == b"HEAD")
        if head.expect_continue and not self.request_done:
            self.down.send_continue()
        pending = self.pending
        if pending:
            self.pending = None
            self.pending_size = 0
            conn.write(self.head_bytes + b"".join(pending))
            self.down.set_reading(PAUSE_BUFFER, True)
        else:
            self.pending = None
            conn.write(self.head_bytes)
        action = self.action
        if action is not None and action.backend_timeout:
            if self.backend_timer is not None:
                self.backend_timer.cancel()
            self.backend_timer = self.rt.loop.call_later(
                action.backend_timeout, self._backend_timed_out
            )

    def _render_head(self, head: RequestHead, rid: bytes) -> bytes:
        down = self.down
        xff = head.forwarded_for
        if head.upgrade is not None:
            framing = b"connection: upgrade\r\nupgrade: %s\r\n" % head.upgrade
        elif head.chunked:
            framing = b"transfer-encoding: chunked\r\n"
        elif head.content_length is not None:
            framing = b"content-length: %d\r\n" % head.content_length
        else:
            framing = b""
        headers = head.headers
        return _REQUEST_HEAD % (
            head.method,
            head.path + b"?" + head.query if head.query else head.path,
            head.authority,
            b"".join([b"%s: %s\r\n" % h for h in headers]) if headers else b"",
            xff + b", " + down.client_ip if xff else down.client_ip,
            down.scheme,
            head.original_authority,
            rid,
            framing,
        )

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
        if head.status == 101:
            self._switch_protocols(head)
            return
        choice = self.choice
        if choice is not None and choice.response_mods:
            headers = head.headers
            for mod in choice.response_mods:
                headers = mod.apply(headers)
            head.headers = headers
        if self.head.upgrade is not None:
            # The upstream refused the upgrade: answer normally, then close, because the
            # client may already have sent bytes for the protocol it asked for.
            self.keep_alive = False
        self.status = head.status
        self.response_started = True
        self.down.send_response(head, self.head)

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
        head = self.head
        return (
            not self.retried
            and conn.requests > 1
            and not conn.codec.received_any
            and not self.response_started
            and head.method in IDEMPOTENT
            and not head.has_body
            and head.upgrade is None
        )

    def _upstream_failed(self, reason: bytes) -> None:
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
        self._timed_out(b"backend_timeout", b"the backend did not answer in time")

    def _timed_out(self, code: bytes, message: bytes) -> None:
        if self.response_done:
            return
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
            and (now - self.start_time > cluster.connect_timeout)
        ):
            connecting.cancel()
            self.connecting = None
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

    def _finish(self) -> None:
        if self.tunnel or self.finished:
            return  # a tunnel finishes when either side closes
        self._account()
        self.down.exchange_finished(self, self.keep_alive and not self.rt.draining)

    def _account(self) -> None:
        if self.finished:
            return
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
