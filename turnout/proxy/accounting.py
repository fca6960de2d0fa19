"""Counting one finished request: its route cell, its routing key's history, the access log.

Called once per request by the exchange with what it knows by then. The cell is the
backendRef's (or the rule's when no backendRef was chosen, or the runtime's ``no_route``):
plain ints and a latency histogram the supervisor collects once a second. Access-log
records are tuples, formatted in batches by the log's thread.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from turnout.observe.stats import LATENCY_BOUNDS

if TYPE_CHECKING:
    from turnout.observe.stats import RouteStats
    from turnout.observe.tracing import RequestTrace
    from turnout.proxy.protocols.heads import RequestHead
    from turnout.proxy.runtime import Runtime
    from turnout.proxy.snapshot.tables import BackendChoice, RouteAction
    from turnout.proxy.upstream.endpoints import Endpoint


def record_request(
    rt: Runtime,
    head: RequestHead,
    action: RouteAction | None,
    choice: BackendChoice | None,
    endpoint: Endpoint | None,
    status: int,
    start_time: float,
    duration: float,
    bytes_out: int,
    bytes_in: int,
    client_json: bytes,
    routing_key: bytes,
    consumer: str | None = None,
    trace: RequestTrace | None = None,
) -> None:
    cell: RouteStats
    if choice is not None:
        cell = choice.stats
    elif action is not None:
        cell = action.stats
    else:
        cell = rt.no_route
    cell.codes[status // 100 if status < 600 else 5] += 1
    cell.buckets[bisect_left(LATENCY_BOUNDS, duration)] += 1
    cell.sum += duration
    if routing_key:
        # Keep this request in its routing key's history (shipped with the stats).
        rt.stats.remember(
            (
                routing_key.decode("ascii"),
                rt.wall_offset + start_time,
                round(duration * 1000.0, 3),
                head.method.decode("latin-1"),
                head.target.decode("latin-1"),
                action.route_label if action is not None else "",
                choice.cluster.label if choice is not None and choice.cluster is not None else "",
                endpoint.key if endpoint is not None else "",
                status,
                head.request_id.decode("latin-1"),
            )
        )
    log = rt.access_log
    if log is not None and status < 400 and not log.sampled():
        rt.stats.access_log_sampled_out += 1
    elif log is not None:
        log.record(
            (
                rt.wall_offset + start_time,
                duration,
                head.method,
                head.target,
                head.original_authority,
                status,
                bytes_out,
                bytes_in,
                action.route_json if action is not None else b"null",
                choice.label_json if choice is not None else b"null",
                endpoint.pool.key_json if endpoint is not None else b"null",
                head.request_id,
                client_json,
                head.get(b"user-agent") if log.wants_user_agent else None,
                routing_key,
                consumer,
                trace.trace_id if trace is not None else 0,
                trace.span_id if trace is not None else 0,
            )
        )
