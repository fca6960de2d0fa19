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

from typing import TYPE_CHECKING

from turnout.proxy.downstream import PAUSE_BUFFER
from turnout.proxy.exchange_core import ExchangeCore
from turnout.proxy.filters.base import (
    PROCEED,
    BodyTransform,
    FilterContext,
    LocalReply,
    StoredReply,
)
from turnout.proxy.filters.refusals import BodyRefused
from turnout.proxy.forward import BUFFER_LIMIT, Forwarder
from turnout.proxy.protocols.grpc import parse_timeout
from turnout.proxy.protocols.heads import NO_BODY_STATUSES, Headers, ResponseHead
from turnout.proxy.protocols.http1_wire import chunk, last_chunk
from turnout.proxy.routing.keys import FROM_COOKIE, find_key
from turnout.proxy.taps import open_taps

if TYPE_CHECKING:
    from turnout.proxy.routing.table import PortTable
    from turnout.proxy.snapshot.tables import RouteAction


class Exchange(ExchangeCore):
    __slots__ = ()

    # -- request side (called by the downstream transport) --------------------------------

    def start(self, table: PortTable[RouteAction] | None) -> None:
        head = self.head
        rid = head.request_id
        if not rid:
            rid = head.request_id = self.rt.ids.next()
        listener, cand = table.route(head) if table is not None else (None, None)
        tracer = self.rt.tracer
        if tracer is not None:
            self.trace = tracer.begin(
                head.received, listener.tracing if listener is not None else None
            )
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
            if self.trace is not None:
                ctx.ran = ()
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
        if isinstance(reply, StoredReply):
            self._send_stored(reply.head, reply.body)
        else:
            self.local_reply(reply.status, reply.code, reply.message, reply.headers)

    def _send_stored(self, head: ResponseHead, body: bytes) -> None:
        """A whole stored response (a cache hit), through the rule's response filters."""
        if self.response_started or self.response_done:
            return
        fw = self.forward
        if fw is not None:
            fw.stop()  # a revalidation answered from the store: the upstream is not read on
        self.pending = None
        ctx = self.ctx
        action = self.action
        head.content_length = None if head.status in NO_BODY_STATUSES else len(body)
        if ctx is not None and action is not None and action.choices:
            if ctx.response_headers is not None:
                head.headers.extend(ctx.response_headers)
            choice = self.choice or action.single or action.choices[0]
            if choice.response_filters and self._response_filters(
                ctx, choice.response_filters, head
            ):
                return
            if ctx.body_transform is not None:  # compression
                body = ctx.body_transform.chunk(body) + ctx.body_transform.end()
                head.content_length = len(body)
        self.status = head.status
        req = self.head
        if not self.request_done and req.has_body:
            self.keep_alive = False  # the rest of the request body will not be read
        self.response_started = True
        self.down.send_response(head, req)
        if body and req.method != b"HEAD" and head.status not in NO_BODY_STATUSES:
            self.down.send_body(body)
            self.bytes_out += len(body)
        self.response_done = True
        self._cancel_timers()
        self.down.end_response(None)
        self._finish()

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
            trace = self.trace
            if trace is not None and choice.version:  # a blue-green preview request
                trace.release = choice.version
        release = choice.release
        if release is not None:
            ctx = self.ctx
            to_candidate, self.release_cookie = release.pick(
                head, self.down.client_ip, ctx.principal if ctx is not None else None
            )
            if to_candidate:
                choice = self.choice = release.candidate
            trace = self.trace
            if trace is not None:  # only a traced request records which version it got
                trace.release = (
                    release.candidate_version if to_candidate else release.stable_version
                )
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
        ctx = self.ctx
        if ctx is not None:  # response filters and plugins see the chosen backend too
            ctx.backend = choice.label
        filters = choice.request_filters
        if filters:
            assert ctx is not None
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

    def request_body(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.progress += 1
        action = self.action
        if action is not None and action.body_limit and self.bytes_in > action.body_limit:
            self._body_too_large()
            return
        ctx = self.ctx
        if ctx is not None and ctx.request_transform is not None:
            decoded = self._decoded(ctx.request_transform, data, False)
            if not decoded:
                return
            data = decoded
        self._body_on(data)

    def _decoded(self, rx: BodyTransform, data: bytes, last: bool) -> bytes | None:
        """The request body through a filter's transform (decompression); None when it
        refused the body (answered, or aborted once the response began)."""
        try:
            return rx.end() if last else rx.chunk(data)
        except BodyRefused as exc:
            if self.ctx is not None:
                self.ctx.request_transform = None
            if self.response_started:
                if not self.response_done:
                    fw = self.forward
                    if fw is not None:
                        fw.stop()
                    self.down.abort()
            elif not self.status:
                self.local_reply(exc.status, exc.code, exc.message)
            return None

    def _body_on(self, data: bytes) -> None:
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
        ctx = self.ctx
        if ctx is not None and ctx.request_transform is not None:
            tail = self._decoded(ctx.request_transform, b"", True)
            if tail is None:
                return  # refused
            if tail:
                self._body_on(tail)
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
