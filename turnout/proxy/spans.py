"""A finished exchange's trace record: one flat tuple of raw values per kept request.

Called by the exchange when it counts a request, only when tracing is on
(``Runtime.tracer``) and the tracer keeps the request (sampled, or an error). The
request pays for one tuple (plus one small tuple per upstream attempt) holding values
the exchange already has: bytes from the request head, ints, floats and the labels the
snapshot built once (``ListenerTable.label``, ``RouteAction.route_label``,
``BackendChoice.label``). Nothing is decoded, formatted or encoded here. The *same*
tuple goes to two readers:

* ``Tracer`` queues it, and ``observe.otlp`` turns it into the OTLP server and client
  spans in the export task, between requests (``observe.flowrecord`` names the fields);
* ``WorkerStats.remember_flow`` ships it to the supervisor, where
  ``observe.history.flow_doc`` makes it the ``turnout trace`` document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from turnout.observe.stats import WorkerStats
    from turnout.observe.tracing import RequestTrace, Tracer
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
    """Queue the record of a finished exchange the tracer keeps; ``client`` is the
    downstream's (scheme, address)."""
    if not tracer.keep(trace, ex.status):
        return
    record = request_flow(ex, trace, wall_offset, client, endpoint, now)
    tracer.add(record, len(trace.attempts) + 1)
    stats.remember_flow(record)


def request_flow(
    ex: FinishedExchange,
    trace: RequestTrace,
    wall_offset: float,
    client: tuple[bytes, bytes],
    endpoint: Endpoint | None,
    now: float,
) -> tuple[Any, ...]:
    """The record (field order: ``observe.flowrecord``)."""
    head = ex.head
    listener = ex.listener
    action = ex.action
    choice = ex.choice
    return (
        head.request_id,
        head.method,
        head.path,
        head.host,
        trace.trace_id,
        trace.span_id,
        trace.sampled,
        wall_offset,
        ex.start_time,
        now,
        ex.status,
        listener.label if listener is not None else "",
        action.route_label if action is not None else "",
        choice.label if choice is not None else "",
        endpoint.key if endpoint is not None else "",
        ex.routing_key,
        ex.overridden,
        ex.reply_code,
        [
            (
                a.endpoint,
                a.start,
                a.end,
                a.status,
                a.error,
                a.resend,
                a.span_id,
                a.host,
                a.port,
                a.kind,
            )
            for a in trace.attempts
        ],
        trace.parent_id,
        client[0],
        client[1],
        head.version,
        head.get(b"user-agent"),
        ex.bytes_in,
        ex.bytes_out,
        listener.port if listener is not None else 0,
        trace.filters,
        trace.release,
    )
