"""One request/response exchange: route, filter, forward, stream back (the HCM analogue).

An ``Exchange`` is created per request by a downstream transport and talks to it only
through the protocol-neutral ``Downstream`` interface, so it never branches on the HTTP
version of the client. Upstream, it talks only to its ``Forwarder`` (``forward.py``),
which owns connections, retries and per-try timers and reports back through the
``UpstreamSink`` interface the exchange implements.

Life of an exchange:

1. ``start``: route (one snapshot read), apply the rule's filters, pick a backendRef
   by weight, run its filters, then hand the request to a ``Forwarder`` (circuit
   breaker, endpoint, pooled or new connection).
2. Request body chunks go to the forwarder as they arrive; before it exists (a filter
   suspended the request) they are buffered up to ``BUFFER_LIMIT``, then the client is
   paused. The rule's forward filters (mirrors) get copies of the body.
3. Response events come back through the forwarder; the response filters see the
   head; backpressure couples the two sockets both ways.
4. When both directions are complete the forwarder has returned the connection to its
   pool; the exchange counts the request (and the forwarder the attempt's outcome), logs
   it, and the downstream may start the next request.

Failures before the response head answer 502/503/504 with a small JSON body (or gRPC
trailers); after it, the client connection is aborted so a truncated body never looks
complete.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING

from turnout.proxy.accounting import record_request
from turnout.proxy.attempts import UpstreamSink
from turnout.proxy.downstream import PAUSE_BUFFER, PAUSE_UPSTREAM, Downstream
from turnout.proxy.filters.base import PROCEED, BodyTap, FilterContext, LocalReply
from turnout.proxy.forward import BUFFER_LIMIT, Forwarder
from turnout.proxy.protocols.grpc import is_grpc, parse_timeout
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.http1_wire import chunk, last_chunk
from turnout.proxy.replies import local_response
from turnout.proxy.routing.keys import FROM_COOKIE, FROM_QUERY, find_key, preview_cookie
from turnout.proxy.runtime import Runtime
from turnout.proxy.spans import trace_finished
from turnout.proxy.taps import open_taps

if TYPE_CHECKING:
    from turnout.observe.tracing import RequestTrace
    from turnout.proxy.filters.base import ResponseFilter
    from turnout.proxy.routing.table import ListenerTable, PortTable
    from turnout.proxy.snapshot.tables import BackendChoice, RouteAction
    from turnout.proxy.upstream.endpoints import Endpoint


class Exchange(UpstreamSink):
    __slots__ = (
        "action",
        "bytes_in",
        "bytes_out",
        "choice",
        "ctx",
        "down",
        "finished",
        "forward",
        "head",
        "held",
        "holding",
        "keep_alive",
        "key_source",
        "listener",
        "overridden",
        "pending",
        "pending_size",
        "progress",
        "release_cookie",
        "reply_code",
        "request_done",
        "request_timer",
        "request_trailers",
        "response_done",
        "response_started",
        "routing_key",
        "rt",
        "stage",
        "start_time",
        "status",
        "sweep_mark",
        "taps",
        "trace",
        "tunnel",
        "tunnel_buffer",
    )

    def __init__(self, rt: Runtime, down: Downstream, head: RequestHead, now: float) -> None:
        self.rt = rt
        self.down = down
        self.head = head
        self.start_time = now
        self.action: RouteAction | None = None
        self.choice: BackendChoice | None = None
        self.forward: Forwarder | None = None  # the upstream side, once filters passed
        self.pending: list[bytes] | None = None  # body received before ``forward``
        self.pending_size = 0
        self.request_done = False
        self.request_trailers: Headers | None = None
        self.response_started = False
        self.response_done = False
        self.keep_alive = head.keep_alive
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.finished = False
        self.tunnel = False
        self.tunnel_buffer: list[bytes] | None = None
        self.request_timer: asyncio.TimerHandle | None = None
        self.progress = 0  # bumped on activity; the sweeper detects a stalled stream
        self.sweep_mark = (-1, now)
        self.taps: list[BodyTap] | None = None  # copies of the body (request mirrors)
        self.routing_key = b""  # a Sandbox / RouteGroup key in force, found in the request
        self.release_cookie = b""  # a Release split's new Set-Cookie value
        self.key_source = 0  # where it was found (routing.keys.FROM_*)
        # what the rule's filters see and where they stand (None: the rule has none)
        self.ctx: FilterContext | None = None
        self.stage = 0  # the chain being run: 0 the rule's, 1 the backendRef's
        # Framing not yet known to be valid (see ``_hold``): the head waits for the first
        # body chunk, or the chunk completing an HTTP/2 declared length for END_STREAM.
        self.holding = False
        self.held: bytes | None = None
        self.trace: RequestTrace | None = None  # set when the worker traces (spans.py)
        self.listener: ListenerTable[RouteAction] | None = None  # for a trace only
        self.overridden = False  # a Sandbox's endpoints replaced the baseline's
        self.reply_code = b""  # why the gateway answered itself (local_reply), if it did

    @property
    def endpoint(self) -> Endpoint | None:
        """The endpoint of the current (or last counted) attempt."""
        fw = self.forward
        return fw.endpoint if fw is not None else None

    # -- request side (called by the downstream transport) --------------------------------

    def start(self, table: PortTable[RouteAction] | None) -> None:
        head = self.head
        rid = head.request_id
        if not rid:
            rid = head.request_id = self.rt.ids.next()
        listener, cand = table.route(head) if table is not None else (None, None)
        tracer = self.rt.tracer
        if tracer is not None:
            self.trace = tracer.begin(head.received)
            self.listener = listener
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
                self.rt.stats.keyed_request(key)
        if cand is None:
            self.local_reply(404, b"no_route", b"no route matches this request")
            return
        action = self.action = cand.action
        limit = action.body_limit
        if limit and head.content_length is not None and head.content_length > limit:
            self._body_too_large()
            return
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
            baseline = choice
            choice = self.choice = choice.overrides.get(key, choice)
            self.overridden = choice is not baseline
        release = choice.release
        if release is not None:
            to_candidate, self.release_cookie = release.pick(head, self.down.client_ip)
            if to_candidate:
                choice = self.choice = release.candidate
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

    def _hold(self) -> bool:
        """Whether the head must wait before going upstream (issue 20 item 3).

        The upstream must never get a complete request the client is refused, nor a head
        whose body framing is already broken. Bodiless requests pay one test. An HTTP/1.1
        chunked body holds the head until its first chunk has parsed (or the request
        ended). HTTP/2 DATA frames carry their own framing, so a stream without
        content-length is never held (a gRPC bidirectional call may wait for the server's
        first message before sending its own). An HTTP/2 content-length is only
        checked against the DATA at END_STREAM, so a declared length of 0 holds the head,
        and a longer one holds the chunk that completes it (``request_body``), until the
        stream ends.
        """
        head = self.head
        if self.request_done or head.upgrade is not None:
            return False
        if head.version == b"2":
            return head.content_length == 0
        return head.chunked and self.pending is None

    def _forward(self) -> None:
        """Filters done: hand the request to the upstream side."""
        head = self.head
        if (head.chunked or head.content_length == 0) and self._hold():
            self.holding = True
            if head.expect_continue:
                head.expect_continue = False  # the client waits for it to send the body
                self.down.send_continue()
            return
        self.holding = False
        choice = self.choice
        action = self.action
        assert choice is not None and action is not None
        cluster = choice.cluster
        if cluster is None:
            self.local_reply(500, b"backend_not_found", b"the route has no valid backend")
            return
        down = self.down
        fw = self.forward = Forwarder(
            self.rt,
            self,
            self.head,
            choice,
            cluster,
            action.backend_timeout,
            down.client_ip,
            down.scheme,
        )
        fw.trace = self.trace
        if not fw.admit(self.start_time):
            return
        if action.forward_filters and self.head.upgrade is None:
            self._start_taps(action)
        pending = self.pending
        self.pending = None
        size = self.pending_size
        cl = head.content_length
        if pending and cl and size >= cl and not self.request_done and head.version == b"2":
            # the whole declared body came first: its last chunk waits for END_STREAM
            self.held = pending.pop()
            size -= len(self.held)
        fw.send(pending, size, self.request_done, self.request_trailers)

    def _start_taps(self, action: RouteAction) -> None:
        """The rule's forward filters (request mirrors): copies of the body as it goes."""
        assert self.ctx is not None
        down = self.down
        self.taps = open_taps(
            action,
            self.ctx,
            self.head,
            down.client_ip,
            down.scheme,
            self.pending,
            self.request_trailers,
            self.request_done,
        )

    def _drop_taps(self) -> None:
        taps = self.taps
        if taps is not None:
            self.taps = None
            if not self.request_done:
                for tap in taps:
                    tap.abort()

    def request_body(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.progress += 1
        action = self.action
        if action is not None and action.body_limit and self.bytes_in > action.body_limit:
            self._body_too_large()
            return
        taps = self.taps
        if taps is not None:
            framed = chunk(data) if self.head.chunked else data  # taps get the wire bytes
            for tap in taps:
                tap.body(framed)
        fw = self.forward
        if fw is not None:
            cl = self.head.content_length
            if cl is not None and self.bytes_in >= cl and self.head.version == b"2":
                # it completes the declared length: held until END_STREAM confirms it
                self.held = data
                return
            fw.request_body(data, self.response_done or self.status != 0)
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
        if self.holding:
            self._forward()  # the first chunk parsed: the head may go

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
        self.request_trailers = trailers  # kept for the forwarder made later
        fw = self.forward
        if self.holding:
            self._forward()  # sends the end with the body it buffered
        elif fw is not None:
            held = self.held
            if held is not None:
                self.held = None
                fw.request_body(held, self.response_done or self.status != 0)
            fw.request_end(trailers)
        if taps is not None:
            for tap in taps:
                tap.end()
        if self.response_done:
            self._finish()

    def client_tunnel_data(self, data: bytes) -> None:
        self.progress += 1
        fw = self.forward
        if self.tunnel and fw is not None:
            fw.tunnel_write(data)
        elif self.tunnel_buffer is None:
            self.tunnel_buffer = [data]
        else:
            self.tunnel_buffer.append(data)

    def downstream_writable(self, writable: bool) -> None:
        fw = self.forward
        if fw is not None:
            fw.set_reading(writable)

    def downstream_lost(self) -> None:
        """The client went away: drop everything for this request."""
        self._drop_taps()
        if self.ctx is not None:
            self.ctx.cancel()  # a pending filter decision: never resumed now
        self._cancel_timers()
        fw = self.forward
        if fw is not None:
            fw.stop()
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

    # -- the upstream side's reports (forward.UpstreamSink) ------------------------------

    def upstream_informational(self, head: ResponseHead) -> None:
        # 1xx other than 100/101 (e.g. 103 Early Hints): relay to the client as is.
        if not self.response_started:
            self.down.send_response(head, self.head)

    def upstream_head(self, head: ResponseHead) -> None:
        if self.key_source == FROM_QUERY:
            head.headers.append((b"set-cookie", preview_cookie(self.routing_key)))
        if self.release_cookie:
            head.headers.append((b"set-cookie", self.release_cookie))
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
                # local_reply stops the forwarder: the rest of this response is not wanted
                self.local_reply(reply.status, reply.code, reply.message, reply.headers)
                return True
        return False

    def upstream_body(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self.down.send_body(data)

    def upstream_end(self, trailers: Headers | None) -> None:
        self.response_done = True
        if self.request_timer is not None:
            self.request_timer.cancel()
            self.request_timer = None
        self.down.end_response(trailers)
        if not self.request_done:
            self.keep_alive = False  # answered before the whole request arrived
        self._finish()

    def upstream_switched(self, head: ResponseHead) -> None:
        self._cancel_timers()
        self.status = 101
        self.response_started = True
        self.tunnel = True
        assert head.upgrade is not None
        head.headers.append((b"connection", b"upgrade"))
        head.headers.append((b"upgrade", head.upgrade))
        self.down.send_response(head, self.head)
        self.down.open_tunnel()
        buffered = self.tunnel_buffer
        fw = self.forward
        if buffered and fw is not None:
            self.tunnel_buffer = None
            fw.tunnel_write(b"".join(buffered))

    def upstream_raw(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self.down.write_raw(data)

    def upstream_failed(
        self, status: int, code: bytes, message: bytes, extra: Headers | None
    ) -> None:
        self.local_reply(status, code, message, extra)

    def upstream_broken(self) -> None:
        self.response_done = self.request_done = True
        self._cancel_timers()
        self.down.abort()
        self._account()

    def upstream_timed_out(self) -> None:
        self._timed_out(b"backend_timeout", b"the backend did not answer in time")

    def upstream_writable(self, writable: bool) -> None:
        self.down.set_reading(PAUSE_UPSTREAM, writable)

    def request_buffer_full(self, full: bool) -> None:
        self.down.set_reading(PAUSE_BUFFER, not full)

    def continue_request(self) -> None:
        self.down.send_continue()

    def flush(self) -> None:
        self.down.flush()

    # -- timeouts -------------------------------------------------------------------------

    def _request_timed_out(self) -> None:
        self.request_timer = None
        self._timed_out(b"request_timeout", b"the request timed out")

    def _timed_out(self, code: bytes, message: bytes) -> None:
        if self.response_done:
            return
        self.rt.stats.upstream_timeouts += 1
        fw = self.forward
        if fw is not None:
            fw.timed_out()
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
        fw = self.forward
        progress = self.progress if fw is None else self.progress + fw.progress
        mark, since = self.sweep_mark
        if mark != progress:
            self.sweep_mark = (progress, now)
            since = now
        if fw is not None and fw.check_connect(now):
            return
        if stream_idle and now - since > stream_idle and not self.tunnel:
            self._timed_out(b"stream_idle_timeout", b"no data was exchanged for too long")

    def _cancel_timers(self) -> None:
        if self.request_timer is not None:
            self.request_timer.cancel()
            self.request_timer = None
        fw = self.forward
        if fw is not None:
            fw.cancel_timers()

    def _body_too_large(self) -> None:
        """The route's requestBodyLimit: 413 and close (the rest is never read), or, once
        the response has begun, abort; the upstream never gets the rest of the body."""
        if self.response_started:
            if not self.response_done:
                fw = self.forward
                if fw is not None:
                    fw.stop()
                self.down.abort()
            return
        if self.status:
            return  # answered already
        self.local_reply(
            413, b"body_too_large", b"the request body is larger than this route accepts"
        )

    # -- completion -----------------------------------------------------------------------

    def local_reply(
        self,
        status: int,
        code: bytes,
        message: bytes,
        extra: Headers | None = None,
    ) -> None:
        """Answer from the gateway itself (errors, redirects; see ``replies``)."""
        if self.response_started or self.response_done:
            return
        if status >= 400:
            self.rt.stats.refusal(status, code)
        fw = self.forward
        if fw is not None:
            fw.stop()  # no more attempts; the rest of an upstream response is not wanted
        self.status = status
        self.reply_code = code
        self.pending = None
        req = self.head
        grpc = bool(code) and is_grpc(req)
        head, body, trailers = local_response(status, code, message, extra, req.request_id, grpc)
        if not self.request_done:
            self.keep_alive = False  # the rest of the request body will not be read
        self.response_started = True
        self.down.send_response(head, req)
        if body and req.method != b"HEAD":
            self.down.send_body(body)
        self.bytes_out += len(body)
        self.response_done = True
        self._cancel_timers()
        self.down.end_response(trailers)
        self._finish()

    def _finish(self) -> None:
        if self.tunnel or self.finished:
            return  # a tunnel finishes when either side closes
        self._account()
        self.down.exchange_finished(self, self.keep_alive and not self.rt.draining)

    def _account(self) -> None:
        if self.finished:
            return
        if self.taps is not None:
            self._drop_taps()
        ctx = self.ctx
        consumer: str | None = None
        if ctx is not None:
            # Cancel a pending decision, and break the exchange <-> context cycle so both
            # are freed by reference counting, not left to the cyclic collector.
            self.ctx = None
            ctx.cancel()
            principal = ctx.principal
            if principal is not None and principal.consumer is not None:
                consumer = principal.consumer
                self.rt.stats.usage(consumer, self.bytes_in, self.bytes_out)
        self.finished = True
        now = perf_counter()
        duration = now - self.start_time
        fw = self.forward
        endpoint: Endpoint | None = None
        trace = self.trace
        if fw is not None:
            # Break the exchange <-> forwarder cycle too (freed by reference counting).
            self.forward = None
            endpoint = fw.endpoint
            if trace is not None:
                error = "" if fw.upstream_status or not fw.gateway_error else "upstream error"
                trace.attempt_end(fw.upstream_status, error, now)
            if fw.guarded:
                fw.finish(now)
            else:
                fw.done = True
        record_request(
            self.rt,
            self.head,
            self.action,
            self.choice,
            endpoint,
            self.status,
            self.start_time,
            duration,
            self.bytes_out,
            self.bytes_in,
            self.down.client_json,
            self.routing_key,
            consumer,
            trace,
        )
        tracer = self.rt.tracer
        if trace is not None and tracer is not None:
            client = (self.down.scheme, self.down.client_ip)
            trace_finished(
                self, tracer, self.rt.stats, self.rt.wall_offset, client, trace, endpoint, now
            )
