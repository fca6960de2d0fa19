"""Per-worker counters: plain ints at fixed indices, no locks, no label lookups per request.

A ``RouteStats`` cell exists per (route, backend) pair and is handed to the compiled
route at snapshot build, so recording a request is three index increments. Cells outlive
snapshots (they are keyed by label), so counters never reset on reload. The worker sends
``WorkerStats.export()`` to the supervisor once a second; the supervisor sums workers.
"""

from __future__ import annotations

from typing import Any, Final

# Request duration buckets (seconds), Prometheus-style upper bounds.
LATENCY_BOUNDS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


# Keyed requests a worker keeps between two exports (one a second); beyond, it counts.
HISTORY_PER_EXPORT: Final = 2000
# Distinct Consumers counted by name per worker; the rest share OTHER_CONSUMER (a JWT
# ``sub`` is a Consumer name too, and one label per end user would swamp Prometheus).
MAX_CONSUMERS: Final = 10_000
OTHER_CONSUMER: Final = "_other"


class RouteStats:
    __slots__ = ("buckets", "codes", "sum")

    def __init__(self) -> None:
        self.codes = [0, 0, 0, 0, 0, 0]  # index = status // 100
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)  # last = +Inf only
        self.sum = 0.0


class WorkerStats:
    __slots__ = (
        "access_log_sampled_out",
        "active_connections",
        "backend_connect_errors",
        "backend_events",
        "connections_total",
        "consumers",
        "flows",
        "flows_dropped",
        "history",
        "history_dropped",
        "internal_errors",
        "keyed",
        "l4",
        "plugin_failures",
        "protocol_errors",
        "refusals",
        "routes",
        "upstream_timeouts",
    )

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], RouteStats] = {}
        self.backend_connect_errors: dict[str, int] = {}
        # (backend, event) -> count; events: "retry", "overflow:<reason>", "ejection",
        # "breaker:<state>" (see observe.metrics for the metric each becomes)
        self.backend_events: dict[tuple[str, str], int] = {}
        self.active_connections = 0
        self.connections_total = 0
        self.protocol_errors = 0
        self.internal_errors = 0
        self.upstream_timeouts = 0
        # L4 (TCPRoute / TLSRoute) counters: ("connections", route, backend),
        # ("bytes", route, "upstream"|"downstream"), ("refused", listener, reason)
        self.l4: dict[tuple[str, str, str], int] = {}
        # requests that carried a sandbox routing key, since the last export
        self.history: list[tuple[Any, ...]] = []
        self.history_dropped = 0
        # answers the gateway made itself with status >= 400: (status, reason code) -> count
        self.refusals: dict[tuple[int, str], int] = {}
        # filter plugins that raised, timed out or answered nonsense: (plugin, reason) -> n
        self.plugin_failures: dict[tuple[str, str], int] = {}
        # requests per sandbox routing key in force
        self.keyed: dict[str, int] = {}
        # per authenticated Consumer: [requests, bytes received, bytes sent]
        self.consumers: dict[str, list[int]] = {}
        self.access_log_sampled_out = 0  # successful requests the log's sampling skipped
        # traced requests' flows (proxy/spans.request_flow), since the last export
        self.flows: list[tuple[Any, ...]] = []
        self.flows_dropped = 0

    def remember(self, record: tuple[Any, ...]) -> None:
        """Keep one keyed request for ``observe.history`` (bounded between exports)."""
        if len(self.history) < HISTORY_PER_EXPORT:
            self.history.append(record)
        else:
            self.history_dropped += 1

    def remember_flow(self, flow: tuple[Any, ...]) -> None:
        """Keep one traced request's flow for ``observe.history`` (bounded likewise)."""
        if len(self.flows) < HISTORY_PER_EXPORT:
            self.flows.append(flow)
        else:
            self.flows_dropped += 1

    def cell(self, route: str, backend: str) -> RouteStats:
        key = (route, backend)
        cell = self.routes.get(key)
        if cell is None:
            cell = self.routes[key] = RouteStats()
        return cell

    def connect_error(self, backend: str) -> None:
        self.backend_connect_errors[backend] = self.backend_connect_errors.get(backend, 0) + 1

    def event(self, backend: str, event: str) -> None:
        key = (backend, event)
        self.backend_events[key] = self.backend_events.get(key, 0) + 1

    def refusal(self, status: int, code: bytes) -> None:
        key = (status, code.decode("ascii", "replace") or "none")
        self.refusals[key] = self.refusals.get(key, 0) + 1

    def plugin_failure(self, plugin: str, reason: str) -> int:
        """Count one failure of a filter plugin; the count so far in this worker."""
        key = (plugin, reason)
        n = self.plugin_failures.get(key, 0) + 1
        self.plugin_failures[key] = n
        return n

    def keyed_request(self, key: bytes) -> None:
        name = key.decode("ascii", "replace")
        self.keyed[name] = self.keyed.get(name, 0) + 1

    def usage(self, consumer: str, received: int, sent: int) -> None:
        """One request of an authenticated Consumer (quotas, billing exports)."""
        cell = self.consumers.get(consumer)
        if cell is None:
            if len(self.consumers) >= MAX_CONSUMERS:
                consumer = OTHER_CONSUMER
                cell = self.consumers.get(consumer)
            if cell is None:
                cell = self.consumers[consumer] = [0, 0, 0]
        cell[0] += 1
        cell[1] += received
        cell[2] += sent

    def l4_count(self, kind: str, a: str, b: str, n: int = 1) -> None:
        key = (kind, a, b)
        self.l4[key] = self.l4.get(key, 0) + n

    def export(self) -> dict[str, Any]:
        """Plain, picklable cumulative values, plus the keyed requests since the last
        export (handed over, not repeated)."""
        history = self.history
        self.history = []
        flows = self.flows
        self.flows = []
        return {
            "flows": flows,
            "flows_dropped": self.flows_dropped,
            "history": history,
            "history_dropped": self.history_dropped,
            "routes": {k: (list(c.codes), list(c.buckets), c.sum) for k, c in self.routes.items()},
            "connect_errors": dict(self.backend_connect_errors),
            "backend_events": dict(self.backend_events),
            "active_connections": self.active_connections,
            "connections_total": self.connections_total,
            "protocol_errors": self.protocol_errors,
            "internal_errors": self.internal_errors,
            "upstream_timeouts": self.upstream_timeouts,
            "l4": dict(self.l4),
            "refusals": dict(self.refusals),
            "plugin_failures": dict(self.plugin_failures),
            "keyed": dict(self.keyed),
            "consumers": {k: tuple(v) for k, v in self.consumers.items()},
            "access_log_sampled_out": self.access_log_sampled_out,
        }
