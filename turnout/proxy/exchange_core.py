"""``ExchangeCore``: an exchange's state, its upstream side's reports, its timers, the
gateway's own answers and the ending (counting, logging, tracing) of a request.

``streams.Exchange`` adds the request side on top (route, filters, backend choice, the
body going up). The split follows the ``UpstreamSink`` interface: everything the
``Forwarder`` calls back, and everything that ends an exchange whichever side ends it,
is here; the class holds every attribute (mypyc requires a native base class to declare
what its methods use).
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING

from turnout.proxy.accounting import record_request
from turnout.proxy.attempts import UpstreamSink
from turnout.proxy.downstream import PAUSE_BUFFER, PAUSE_UPSTREAM, Downstream
from turnout.proxy.filters.base import (
    BodyTap,
    BodyTransform,
    FilterContext,
    LocalReply,
    ResponseTap,
    filter_name,
)
from turnout.proxy.forward import Forwarder
from turnout.proxy.protocols.grpc import is_grpc
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.replies import local_response
from turnout.proxy.routing.keys import FROM_QUERY, preview_cookie
from turnout.proxy.runtime import Runtime
from turnout.proxy.spans import trace_finished

if TYPE_CHECKING:
    from turnout.observe.tracing import RequestTrace
    from turnout.proxy.filters.base import ResponseFilter
    from turnout.proxy.routing.table import ListenerTable
    from turnout.proxy.snapshot.tables import BackendChoice, RouteAction
    from turnout.proxy.upstream.endpoints import Endpoint


class ExchangeCore(UpstreamSink):
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
        "rtap",
        "rtransform",
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
        self.rtap: ResponseTap | None = None  # a filter's copy of the response (a cache fill)
        self.rtransform: BodyTransform | None = None  # rewrites the body (compression)

    @property
    def endpoint(self) -> Endpoint | None:
        """The endpoint of the current (or last counted) attempt."""
        fw = self.forward
        return fw.endpoint if fw is not None else None

    def _drop_taps(self) -> None:
        taps = self.taps
        if taps is not None:
            self.taps = None
            if not self.request_done:
                for tap in taps:
                    tap.abort()

    # -- the upstream side's reports (forward.UpstreamSink) ------------------------------

    def upstream_informational(self, head: ResponseHead) -> None:
        # 1xx other than 100/101 (e.g. 103 Early Hints): relay to the client as is.
        if not self.response_started:
            self.down.send_response(head, self.head)

    def upstream_head(self, head: ResponseHead) -> None:
        ctx = self.ctx
        if ctx is not None and ctx.response_tap is not None:
            reply = ctx.response_tap.head(head)
            if reply is not None:
                self.filter_answered(reply)
                return
            self.rtap = ctx.response_tap
        if self.key_source == FROM_QUERY:
            head.headers.append((b"set-cookie", preview_cookie(self.routing_key)))
        if self.release_cookie:
            head.headers.append((b"set-cookie", self.release_cookie))
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
            self.rtransform = ctx.body_transform
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
        ran = ctx.ran
        for flt in filters:
            if ran is not None:
                ran = ctx.ran = (*ran, flt)
            reply = flt.on_response(ctx, head)
            if reply is not None:
                # local_reply stops the forwarder: the rest of this response is not wanted
                self.local_reply(reply.status, reply.code, reply.message, reply.headers)
                return True
        return False

    def upstream_body(self, data: bytes) -> None:
        if self.rtap is not None:
            self.rtap.body(data)
        if self.rtransform is not None:
            data = self.rtransform.chunk(data)
            if not data:
                return
        self.bytes_out += len(data)
        self.down.send_body(data)

    def upstream_end(self, trailers: Headers | None) -> None:
        self.response_done = True
        if self.request_timer is not None:
            self.request_timer.cancel()
            self.request_timer = None
        if self.rtap is not None:
            self.rtap.end()
        if self.rtransform is not None:
            tail = self.rtransform.end()
            self.bytes_out += len(tail)
            if tail:
                self.down.send_body(tail)
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
        ctx = self.ctx
        if ctx is not None and ctx.response_tap is not None:
            reply = ctx.response_tap.failed(status)  # e.g. a cache's stale-if-error
            if reply is not None:
                self.filter_answered(reply)
                return
        self.local_reply(status, code, message, extra)

    def filter_answered(self, reply: LocalReply) -> None:
        """A filter's answer (``streams.Exchange`` also sends stored responses)."""
        self.local_reply(reply.status, reply.code, reply.message, reply.headers)

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
            if self.trace is not None and ctx.ran:
                self.trace.filters = tuple([filter_name(f) for f in ctx.ran])
            if ctx.response_tap is not None:
                ctx.response_tap.abort()  # ignored by a tap that ended
                ctx.response_tap = None
            self.rtap = None
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
