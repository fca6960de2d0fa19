"""The filter interface of the data plane: what a request or response filter may do.

A route rule compiles, at snapshot build, into tuples of filters (``RouteAction``:
request-phase filters and forward taps; ``BackendChoice``: its own request-phase filters
and the response-phase chain). A rule without a feature has an empty tuple and pays
nothing for it. Per request, the exchange creates one ``FilterContext`` — only when the
rule has filters at all — and runs the chains through it.

Request phase (``RequestFilter.on_request``), in the order of the chain. A filter
returns a verdict:

* ``None`` (``CONTINUE``): go on with the next filter. A filter may modify the request
  head (``ctx.head``: headers, path, query) before returning it.
* ``LocalReply``: answer from the gateway (status, headers, an optional JSON error body;
  a gRPC request gets its gRPC form of the error); no later filter runs and no upstream
  is contacted.
* ``Suspend``: wait for an asynchronous decision — a coroutine (a JWKS fetch, a Redis
  round trip) or a delay in seconds — then call the same filter's ``resume(ctx,
  outcome)``, which returns a verdict in turn. One mechanism for every filter: the
  context owns the task or timer, so when the client leaves or a timer answers the
  request meanwhile, the pending decision is cancelled and its late result ignored;
  nothing is written to a dead client. A coroutine that raises answers 500.

Forward taps (``ForwardFilter.on_forward``) run once the request is about to be sent
upstream, with the rendered HTTP/1.1 head; one may return a ``BodyTap`` that then gets
every request-body chunk as framed for the upstream, ``end()`` and ``abort()``
(request mirroring is one).

Response phase (``ResponseFilter.on_response``): called with the upstream's response
head before it is sent downstream; a filter modifies ``head.headers`` in place or
replaces the list, and returns ``None``, or a ``LocalReply`` to answer instead of the
upstream (its connection is dropped). Response filters cannot suspend.

A filter is any object with the hooks of its phase (``RequestHooks``,
``ResponseHooks``, ``ForwardHooks``); the built-in ones derive from the base classes
``RequestFilter``/``ResponseFilter``/``ForwardFilter`` so that compiled code calls them
natively, and ``RouteAction.add_filters`` wraps any other object once, at build time.

Filters are long-lived, shared by every request of the rule and must keep no
per-request state on themselves: per-request values go on the context (``principal``,
``response_headers``, or ``state`` for anything else).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol

from turnout.core.tasks import spawn
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead

if TYPE_CHECKING:
    from turnout.proxy.filters.auth.chain import Principal

log = logging.getLogger("turnout.filters")

# What ``FilterContext.run`` reports to the exchange.
PROCEED: Final = 0  # every filter continued: forward the request
ANSWERED: Final = 1  # a filter answered locally (the host's ``answer`` was called)
SUSPENDED: Final = 2  # waiting for a decision; the host hears back later

# Decisions in flight, held until they end (the loop keeps only weak references).
_WAITING: set[asyncio.Task[Any]] = set()


class LocalReply:
    """Answer the request from the gateway. ``code`` non-empty: a JSON error body
    ``{"error": code, "message": message, "request_id": ...}`` (gRPC: the status in the
    trailers); empty: no body (a redirect, a 204)."""

    __slots__ = ("code", "headers", "message", "status")

    def __init__(
        self,
        status: int,
        code: bytes = b"",
        message: bytes = b"",
        headers: Headers | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def __repr__(self) -> str:
        return f"<LocalReply {self.status} {self.code!r}>"


class Suspend:
    """Wait for ``wait`` (a coroutine; ``resume`` gets its result) or, without one, for
    ``delay`` seconds (``resume`` gets ``token`` back)."""

    __slots__ = ("delay", "token", "wait")

    def __init__(
        self,
        wait: Coroutine[Any, Any, object] | None = None,
        delay: float = 0.0,
        token: object = None,
    ) -> None:
        self.wait = wait
        self.delay = delay
        self.token = token


class StoredReply(LocalReply):
    """Answer with a whole stored response (a cache hit): ``head`` and ``body`` go to the
    client through the rule's response filters, as an upstream's response would."""

    __slots__ = ("body", "head")

    def __init__(self, head: ResponseHead, body: bytes) -> None:
        super().__init__(head.status)
        self.head = head
        self.body = body


class BodyTransform(Protocol):
    """Rewrites the response body as it streams (set as ``ctx.body_transform`` by a
    response filter, per request: compression): ``chunk`` per chunk, ``end`` for the tail."""

    def chunk(self, data: bytes) -> bytes: ...
    def end(self) -> bytes: ...


class ResponseTap(Protocol):
    """Follows one request's upstream response (set as ``ctx.response_tap`` by a request
    filter, per request: a cache filling its store). ``head`` sees the upstream's head
    first of all (before added fields and response filters) and may answer instead
    (a ``StoredReply``: the upstream connection is then dropped); ``failed`` sees an
    upstream failure before any head (a 502/503/504 about to be sent) and may answer
    instead; then ``body`` per chunk and ``end``; ``abort`` when the request ended any
    other way (called at the end of every request, so it must ignore a tap that ended).
    A protocol, not a base class: taps live in modules that are not compiled."""

    def head(self, head: ResponseHead) -> LocalReply | None: ...
    def failed(self, status: int) -> LocalReply | None: ...
    def body(self, data: bytes) -> None: ...
    def end(self) -> None: ...
    def abort(self) -> None: ...


# A request-phase verdict: None continues.
Verdict = LocalReply | Suspend | None
CONTINUE: Final = None


class RequestHooks(Protocol):
    """What a request-phase filter implements (any object with these methods)."""

    def on_request(self, ctx: FilterContext) -> Verdict:
        """Called once per request, in chain order."""
        ...

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        """Called after this filter's ``Suspend``: ``outcome`` is the coroutine's
        result, or the ``token`` of a delay. Filters that never suspend return None."""
        ...


class ResponseHooks(Protocol):
    """What a response-phase filter implements."""

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        """Called with the upstream's response head before it goes downstream."""
        ...


class BodyTap(Protocol):
    """Receives a copy of the request body as sent upstream (see ``ForwardHooks``)."""

    def body(self, data: bytes) -> None: ...
    def end(self) -> None: ...
    def abort(self) -> None: ...


class ForwardHooks(Protocol):
    """What a forward filter implements."""

    def on_forward(self, ctx: FilterContext, wire_head: bytes) -> BodyTap | None:
        """Called when the request is forwarded, with its rendered HTTP/1.1 head."""
        ...


# The chains hold these base classes: the built-in filters derive from them, so a
# compiled data plane calls them natively; any other object with the hooks is wrapped
# once, at build time, by ``request_filter`` / ``response_filter`` / ``forward_filter``.


class RequestFilter:
    __slots__ = ()

    def on_request(self, ctx: FilterContext) -> Verdict:
        return None

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        return None


class ResponseFilter:
    __slots__ = ()

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        return None


class ForwardFilter:
    __slots__ = ()

    def on_forward(self, ctx: FilterContext, wire_head: bytes) -> BodyTap | None:
        return None


class _RequestAdapter(RequestFilter):
    __slots__ = ("hooks",)

    def __init__(self, hooks: RequestHooks) -> None:
        self.hooks = hooks

    def on_request(self, ctx: FilterContext) -> Verdict:
        return self.hooks.on_request(ctx)

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        return self.hooks.resume(ctx, outcome)

    def __repr__(self) -> str:
        return repr(self.hooks)


class _ResponseAdapter(ResponseFilter):
    __slots__ = ("hooks",)

    def __init__(self, hooks: ResponseHooks) -> None:
        self.hooks = hooks

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        return self.hooks.on_response(ctx, head)

    def __repr__(self) -> str:
        return repr(self.hooks)


class _ForwardAdapter(ForwardFilter):
    __slots__ = ("hooks",)

    def __init__(self, hooks: ForwardHooks) -> None:
        self.hooks = hooks

    def on_forward(self, ctx: FilterContext, wire_head: bytes) -> BodyTap | None:
        return self.hooks.on_forward(ctx, wire_head)

    def __repr__(self) -> str:
        return repr(self.hooks)


def filter_name(flt: object) -> str:
    """How a trace names a filter: its class, without the ``Filter`` suffix."""
    if isinstance(flt, _RequestAdapter | _ResponseAdapter | _ForwardAdapter):
        flt = flt.hooks  # a filter that does not derive from the base classes
    name = type(flt).__name__
    return name[:-6] if name.endswith("Filter") and len(name) > 6 else name


def request_filter(hooks: RequestHooks) -> RequestFilter:
    return hooks if isinstance(hooks, RequestFilter) else _RequestAdapter(hooks)


def response_filter(hooks: ResponseHooks) -> ResponseFilter:
    return hooks if isinstance(hooks, ResponseFilter) else _ResponseAdapter(hooks)


def forward_filter(hooks: ForwardHooks) -> ForwardFilter:
    return hooks if isinstance(hooks, ForwardFilter) else _ForwardAdapter(hooks)


class FilterHost(Protocol):
    """The side of the exchange a context reports to (not for filters to call)."""

    def filters_passed(self) -> None: ...
    def filter_answered(self, reply: LocalReply) -> None: ...
    def flush(self) -> None: ...


class FilterContext:
    """What filters see of one request.

    ``head``: the request head (filters may modify it); ``client_ip`` and
    ``client_cert`` (the verified client certificate as an x-forwarded-client-cert
    value, or None); ``route``: the route's "namespace/name" label and ``route_json``
    the same as a JSON string; ``started``: when the request arrived (``perf_counter``
    seconds); ``prefix``: the matched path prefix (None for other
    match types); ``scheme`` and ``port``: the listener's; ``loop``: the event loop;
    ``principal``: who a SecurityPolicy authenticated; ``backend``: the chosen
    backendRef's label once chosen ("" before); ``response_headers``: headers to add to
    the upstream's response; ``response_tap``: a per-request ``ResponseTap``;
    ``body_transform`` / ``request_transform``: per-request ``BodyTransform`` of the
    response / request body (the request's may raise ``refusals.BodyRefused``);
    ``state``: a dict for filters' own per-request values.
    """

    __slots__ = (
        "_chain",
        "_host",
        "_index",
        "_task",
        "_timer",
        "backend",
        "body_transform",
        "client_cert",
        "client_ip",
        "head",
        "loop",
        "port",
        "prefix",
        "principal",
        "ran",
        "request_transform",
        "response_headers",
        "response_tap",
        "route",
        "route_json",
        "scheme",
        "started",
        "state",
    )

    def __init__(
        self,
        host: FilterHost,
        head: RequestHead,
        loop: asyncio.AbstractEventLoop,
        client_ip: bytes = b"",
        client_cert: bytes | None = None,
        route: str = "",
        route_json: bytes = b"null",
        prefix: bytes | None = None,
        scheme: bytes = b"http",
        port: int = 0,
        started: float = 0.0,
    ) -> None:
        self._host = host
        self.started = started
        self.head = head
        self.loop = loop
        self.client_ip = client_ip
        self.client_cert = client_cert
        self.route = route
        self.route_json = route_json
        self.prefix = prefix
        self.scheme = scheme
        self.port = port
        self.principal: Principal | None = None
        self.backend = ""
        self.response_headers: Headers | None = None
        self.response_tap: ResponseTap | None = None
        self.body_transform: BodyTransform | None = None
        self.request_transform: BodyTransform | None = None
        self.state: dict[str, object] | None = None
        self._chain: tuple[RequestFilter, ...] = ()
        self._index = 0
        # The filters that ran, in order, when the request is traced (``turnout trace``);
        # None (untraced) costs one check per chain, nothing per filter.
        self.ran: tuple[object, ...] | None = None
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def add_response_headers(self, headers: Headers) -> None:
        """Add ``headers`` to the upstream's response (before the response filters)."""
        if self.response_headers is None:
            self.response_headers = list(headers)
        else:
            self.response_headers.extend(headers)

    def values(self) -> dict[str, object]:
        """The per-request dict for filters' own values (made on first use)."""
        state = self.state
        if state is None:
            state = self.state = {}
        return state

    @property
    def suspended(self) -> bool:
        return self._task is not None or self._timer is not None

    # -- driven by the exchange -------------------------------------------------------------

    def run(self, chain: tuple[RequestFilter, ...]) -> int:
        """Run ``chain`` from its start: ``PROCEED``, ``ANSWERED`` or ``SUSPENDED``."""
        self._chain = chain
        ran = self.ran
        if ran is not None:
            self.ran = ran + chain
        return self._run_from(0)

    def cancel(self) -> None:
        """Drop a pending decision: the request ended (client gone, timed out, answered)."""
        task = self._task
        if task is not None:
            self._task = None
            task.cancel()
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def _run_from(self, index: int) -> int:
        chain = self._chain
        count = len(chain)
        while index < count:
            verdict = chain[index].on_request(self)
            if verdict is not None:
                return self._verdict(index, verdict)
            index += 1
        return PROCEED

    def _verdict(self, index: int, verdict: LocalReply | Suspend) -> int:
        if isinstance(verdict, LocalReply):
            ran = self.ran
            if ran is not None:  # the rest of the chain did not run
                self.ran = ran[: len(ran) - len(self._chain) + index + 1]
            self._host.filter_answered(verdict)
            return ANSWERED
        self._index = index
        wait = verdict.wait
        if wait is not None:
            task: asyncio.Task[object] = spawn(wait, loop=self.loop, keep=_WAITING)
            self._task = task
            task.add_done_callback(self._decided)
        else:
            self._timer = self.loop.call_later(verdict.delay, self._woken, verdict.token)
        return SUSPENDED

    def _decided(self, task: asyncio.Task[object]) -> None:
        if task is not self._task:
            return  # cancelled meanwhile: the request is gone or answered
        self._task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("filter %r failed: %r", self._chain[self._index], exc)
            self._host.filter_answered(
                LocalReply(500, b"filter_error", b"the request could not be processed")
            )
        else:
            self._resume(task.result())
        self._host.flush()

    def _woken(self, token: object) -> None:
        if self._timer is None:
            return
        self._timer = None
        self._resume(token)
        self._host.flush()

    def _resume(self, outcome: object) -> None:
        index = self._index
        verdict = self._chain[index].resume(self, outcome)
        state = self._run_from(index + 1) if verdict is None else self._verdict(index, verdict)
        if state == PROCEED:
            self._host.filters_passed()
