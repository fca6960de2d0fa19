"""A finished exchange's spans (one server span, one client span per upstream attempt)
and its request flow (the same facts as one plain dict, for ``turnout trace ID``).

Called by the exchange when it counts a request, only when tracing is on
(``Runtime.tracer``) and the tracer keeps the request (sampled, or an error). Attribute
names follow the OpenTelemetry HTTP semantic conventions (``http.request.method``,
``url.path``, ``server.address``, ``http.response.status_code``,
``http.request.resend_count``, ``error.type``, ...); what only the gateway knows goes
under ``turnout.*`` (request id, route, backend, endpoint, routing key, sandbox
override). The query string is left out: it may hold credentials.

Span status follows the conventions too: a server span is an error from 500 up, a
client span from 400 up or when the attempt failed without an answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from turnout.observe.tracing import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    Attributes,
    RequestTrace,
    SpanRecord,
    Tracer,
)

if TYPE_CHECKING:
    from turnout.observe.stats import WorkerStats
    from turnout.proxy.protocols.heads import RequestHead
    from turnout.proxy.routing.table import ListenerTable
    from turnout.proxy.snapshot.tables import BackendChoice, RouteAction
    from turnout.proxy.upstream.endpoints import Endpoint


class FinishedExchange(Protocol):
    """What ``trace_finished`` reads of an exchange (``streams.Exchange`` has it all)."""

    head: RequestHead
    status: int
    start_time: float
    listener: ListenerTable[RouteAction] | None
    action: RouteAction | None
    choice: BackendChoice | None
    routing_key: bytes
    overridden: bool
    bytes_in: int
    bytes_out: int
    reply_code: bytes


def trace_finished(
    ex: FinishedExchange,
    tracer: Tracer,
    stats: WorkerStats,
    wall_offset: float,
    client: tuple[bytes, bytes],
    trace: RequestTrace,
    endpoint: Endpoint | None,
    now: float,
) -> None:
    """Record the spans and the flow of a finished exchange the tracer keeps; ``client``
    is the downstream's (scheme, address)."""
    if not tracer.keep(trace, ex.status):
        return
    view = ExchangeView(ex.head, ex.status, ex.start_time, now, wall_offset, *client)
    view.listener = ex.listener
    view.action = ex.action
    view.choice = ex.choice
    view.endpoint = endpoint
    view.routing_key = ex.routing_key
    view.overridden = ex.overridden
    view.bytes_in = ex.bytes_in
    view.bytes_out = ex.bytes_out
    view.reply_code = ex.reply_code
    record_spans(tracer, trace, view)
    stats.remember_flow(request_flow(trace, view))


class ExchangeView:
    """What the spans say about one finished exchange (filled by ``Exchange._account``)."""

    def __init__(
        self,
        head: RequestHead,
        status: int,
        start: float,
        end: float,
        wall_offset: float,
        scheme: bytes,
        client_ip: bytes,
    ) -> None:
        self.head = head
        self.status = status
        self.start = start
        self.end = end
        self.wall_offset = wall_offset
        self.scheme = scheme
        self.client_ip = client_ip
        self.listener: ListenerTable[RouteAction] | None = None
        self.action: RouteAction | None = None
        self.choice: BackendChoice | None = None
        self.endpoint: Endpoint | None = None
        self.routing_key = b""
        self.overridden = False  # a Sandbox's endpoints replaced the baseline's
        self.bytes_in = 0
        self.bytes_out = 0
        self.reply_code = b""  # the gateway answered itself (e.g. ``no_route``)


def _ns(view: ExchangeView, t: float) -> int:
    return int((view.wall_offset + t) * 1e9)


def _common(view: ExchangeView, attrs: Attributes) -> None:
    choice = view.choice
    if choice is not None:
        attrs.append(("turnout.backend", choice.label))
    if view.routing_key:
        attrs.append(("turnout.routing_key", view.routing_key.decode("ascii", "replace")))
        attrs.append(("turnout.sandbox.override", view.overridden))


def server_span(trace: RequestTrace, view: ExchangeView) -> SpanRecord:
    head = view.head
    method = head.method.decode("latin-1")
    status = view.status
    attrs: Attributes = [
        ("http.request.method", method),
        ("url.path", head.path.decode("latin-1")),
        ("url.scheme", view.scheme.decode("latin-1")),
        ("server.address", head.host),
        ("network.protocol.version", head.version.decode("latin-1")),
        ("client.address", view.client_ip.decode("latin-1")),
        ("http.response.status_code", status),
        ("http.request.body.size", view.bytes_in),
        ("http.response.body.size", view.bytes_out),
        ("turnout.request_id", head.request_id.decode("latin-1")),
    ]
    listener = view.listener
    if listener is not None:
        attrs.append(("server.port", listener.port))
        attrs.append(("turnout.listener", f"{listener.gateway}/{listener.name}"))
    agent = head.get(b"user-agent")
    if agent is not None:
        attrs.append(("user_agent.original", agent.decode("latin-1")))
    action = view.action
    name = method
    if action is not None:
        attrs.append(("turnout.route", action.route_label))
        name = f"{method} {action.route_label}"
    _common(view, attrs)
    error = ""
    if status >= 500:
        error = f"HTTP {status}"
        attrs.append(("error.type", str(status)))
    return SpanRecord(
        trace.trace_id,
        trace.span_id,
        trace.parent_id,
        name,
        SPAN_KIND_SERVER,
        _ns(view, view.start),
        _ns(view, view.end),
        attrs,
        error,
    )


def client_spans(trace: RequestTrace, view: ExchangeView) -> list[SpanRecord]:
    method = view.head.method.decode("latin-1")
    out: list[SpanRecord] = []
    for attempt in trace.attempts:
        attrs: Attributes = [("http.request.method", method)]
        if attempt.host:
            attrs.append(("server.address", attempt.host))
            attrs.append(("server.port", attempt.port))
        attrs.append(("turnout.endpoint", attempt.endpoint))
        if attempt.resend:
            attrs.append(("http.request.resend_count", attempt.resend))
        error = ""
        if attempt.status:
            attrs.append(("http.response.status_code", attempt.status))
            if attempt.status >= 400:
                error = f"HTTP {attempt.status}"
                attrs.append(("error.type", str(attempt.status)))
        elif attempt.error:
            error = attempt.error
            attrs.append(("error.type", attempt.error))
        _common(view, attrs)
        end = attempt.end or view.end
        out.append(
            SpanRecord(
                trace.trace_id,
                attempt.span_id,
                trace.span_id,
                method,
                SPAN_KIND_CLIENT,
                _ns(view, attempt.start),
                _ns(view, end),
                attrs,
                error,
            )
        )
    return out


def record_spans(tracer: Tracer, trace: RequestTrace, view: ExchangeView) -> None:
    """Queue the request's spans (the caller checked that the tracer keeps them)."""
    records = client_spans(trace, view)
    records.append(server_span(trace, view))
    tracer.add(records)


def request_flow(trace: RequestTrace, view: ExchangeView) -> tuple[Any, ...]:
    """The hops of one kept request as a tuple of raw values (``observe.history.flow_doc``
    names and formats them in the supervisor, so the worker formats nothing)."""
    head = view.head
    listener = view.listener
    action = view.action
    choice = view.choice
    endpoint = view.endpoint
    return (
        head.request_id,
        head.method,
        head.path,
        head.host,
        trace.trace_id,
        trace.span_id,
        trace.sampled,
        view.wall_offset,
        view.start,
        view.end,
        view.status,
        f"{listener.gateway}/{listener.name}" if listener is not None else "",
        action.route_label if action is not None else "",
        choice.label if choice is not None else "",
        endpoint.key if endpoint is not None else "",
        view.routing_key,
        view.overridden,
        view.reply_code,
        [
            (a.endpoint, a.start, a.end, a.status, a.error, a.resend, a.span_id)
            for a in trace.attempts
        ],
    )
