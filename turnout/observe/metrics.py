"""Prometheus exposition of the supervisor's aggregate of all workers' counters.

Workers send cumulative counters once a second; ``Aggregate`` sums the live workers'
latest reports with the totals of workers that have exited (so counters never go
backwards when a worker is replaced). ``TurnoutCollector`` renders the aggregate with
prometheus-client's metric families and exposition format.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from turnout.observe.stats import LATENCY_BOUNDS

CODE_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")


@dataclass(slots=True)
class RouteTotals:
    codes: list[int] = field(default_factory=lambda: [0] * 6)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    sum: float = 0.0

    def add(self, codes: list[int], buckets: list[int], total: float) -> None:
        for i, v in enumerate(codes):
            self.codes[i] += v
        for i, v in enumerate(buckets):
            self.buckets[i] += v
        self.sum += total


@dataclass(slots=True)
class Aggregate:
    routes: dict[tuple[str, str], RouteTotals] = field(default_factory=dict)
    connect_errors: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    pools: dict[str, list[int]] = field(default_factory=dict)
    backend_events: dict[tuple[str, str], int] = field(default_factory=dict)
    # endpoint -> {"healthy", "checks", "failures", "backend", ...} from active checks
    endpoint_health: dict[str, dict[str, Any]] = field(default_factory=dict)
    # endpoint -> seconds it stays ejected by outlier detection (host-wide table)
    endpoint_ejections: dict[str, float] = field(default_factory=dict)
    # L4 counters: (kind, label, label) -> count, see WorkerStats.l4
    l4: dict[tuple[str, str, str], int] = field(default_factory=dict)
    refusals: dict[tuple[int, str], int] = field(default_factory=dict)
    plugin_failures: dict[tuple[str, str], int] = field(default_factory=dict)
    keyed: dict[str, int] = field(default_factory=dict)  # routing key -> requests
    # consumer -> [requests, bytes received, bytes sent]
    consumers: dict[str, list[int]] = field(default_factory=dict)
    # (cache policy, outcome) -> count; (cache policy, "entries"|"bytes") -> gauge
    cache: dict[tuple[str, str], int] = field(default_factory=dict)
    cache_gauges: dict[tuple[str, str], int] = field(default_factory=dict)

    def add_worker(self, stats: dict[str, Any], *, include_gauges: bool = True) -> None:
        for key, (codes, buckets, total) in stats.get("routes", {}).items():
            self.routes.setdefault(tuple(key), RouteTotals()).add(codes, buckets, total)
        for backend, n in stats.get("connect_errors", {}).items():
            self.connect_errors[backend] = self.connect_errors.get(backend, 0) + n
        for key, n in stats.get("backend_events", {}).items():
            key = tuple(key)
            self.backend_events[key] = self.backend_events.get(key, 0) + n
        for key, n in stats.get("l4", {}).items():
            key = tuple(key)
            self.l4[key] = self.l4.get(key, 0) + n
        for key, n in stats.get("refusals", {}).items():
            key = tuple(key)
            self.refusals[key] = self.refusals.get(key, 0) + n
        for key, n in stats.get("plugin_failures", {}).items():
            key = tuple(key)
            self.plugin_failures[key] = self.plugin_failures.get(key, 0) + n
        for name, n in stats.get("keyed", {}).items():
            self.keyed[name] = self.keyed.get(name, 0) + n
        for name, usage in stats.get("consumers", {}).items():
            slot = self.consumers.setdefault(name, [0, 0, 0])
            for i, v in enumerate(usage):
                slot[i] += v
        for zone, counts in stats.get("cache", {}).items():
            for outcome, n in counts.items():
                if outcome in ("entries", "bytes"):
                    if include_gauges:
                        key = (zone, outcome)
                        self.cache_gauges[key] = self.cache_gauges.get(key, 0) + n
                else:
                    key = (zone, outcome)
                    self.cache[key] = self.cache.get(key, 0) + n
        for name in (
            "connections_total",
            "protocol_errors",
            "upstream_timeouts",
            "access_log_dropped",
            "access_log_sampled_out",
            "trace_spans_exported",
            "trace_spans_dropped",
            "trace_export_failures",
        ):
            self.counters[name] = self.counters.get(name, 0) + int(stats.get(name, 0))
        if include_gauges:
            self.gauges["active_connections"] = self.gauges.get(
                "active_connections", 0
            ) + stats.get("active_connections", 0)
            for endpoint, (idle, open_) in stats.get("pools", {}).items():
                slot = self.pools.setdefault(endpoint, [0, 0])
                slot[0] += idle
                slot[1] += open_


class TurnoutCollector(Collector):
    def __init__(self, source: Any) -> None:
        self._source = source  # has .aggregate() -> Aggregate and .status() -> dict

    def collect(self) -> Iterator[Metric]:
        agg: Aggregate = self._source.aggregate()
        status: dict[str, Any] = self._source.status()
        requests = CounterMetricFamily(
            "turnout_requests",
            "Requests answered, by route, backend and status class",
            labels=["route", "backend", "code"],
        )
        latency = HistogramMetricFamily(
            "turnout_request_duration_seconds",
            "Time from request head to the end of the response",
            labels=["route", "backend"],
        )
        for (route, backend), totals in sorted(agg.routes.items()):
            for i, count in enumerate(totals.codes):
                if count:
                    requests.add_metric([route, backend, CODE_CLASSES[i]], count)
            cumulative = 0
            buckets = []
            for bound, count in zip((*LATENCY_BOUNDS, float("inf")), totals.buckets, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([route, backend], buckets, totals.sum)
        yield requests
        yield latency
        connect = CounterMetricFamily(
            "turnout_upstream_connect_errors",
            "Failed upstream connection attempts",
            labels=["backend"],
        )
        for backend, n in sorted(agg.connect_errors.items()):
            connect.add_metric([backend], n)
        yield connect
        yield from _backend_events(agg.backend_events)
        yield from _endpoint_health(agg.endpoint_health)
        ejected = GaugeMetricFamily(
            "turnout_endpoint_ejected_seconds",
            "Seconds an endpoint stays ejected by outlier detection (host-wide; 0 when in)",
            labels=["endpoint"],
        )
        for endpoint, left in sorted(agg.endpoint_ejections.items()):
            ejected.add_metric([endpoint], left)
        yield ejected
        yield from _l4(agg.l4)
        yield _counter(
            "turnout_upstream_timeouts",
            "Requests that hit a route or connect timeout",
            agg.counters.get("upstream_timeouts", 0),
        )
        yield _counter(
            "turnout_downstream_connections",
            "Client connections accepted",
            agg.counters.get("connections_total", 0),
        )
        yield _counter(
            "turnout_protocol_errors",
            "Requests refused as malformed (4xx and close)",
            agg.counters.get("protocol_errors", 0),
        )
        yield _counter(
            "turnout_internal_errors",
            "Requests that hit a gateway bug (answered 500 or closed); should stay 0",
            agg.counters.get("internal_errors", 0),
        )
        yield from _usage(agg)
        yield from _cache(agg)
        yield from _certificates(status.get("certificates", ()))
        yield _counter(
            "turnout_access_log_sampled_out",
            "Successful requests left out of the access log by its sampling rate",
            agg.counters.get("access_log_sampled_out", 0),
        )
        yield _counter(
            "turnout_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            agg.counters.get("access_log_dropped", 0),
        )
        yield from _tracing(agg.counters)
        yield _gauge(
            "turnout_downstream_connections_active",
            "Open client connections",
            agg.gauges.get("active_connections", 0),
        )
        pools = GaugeMetricFamily(
            "turnout_upstream_connections",
            "Upstream connections per endpoint",
            labels=["endpoint", "state"],
        )
        for endpoint, (idle, open_) in sorted(agg.pools.items()):
            pools.add_metric([endpoint, "idle"], idle)
            pools.add_metric([endpoint, "open"], open_)
        yield pools
        yield _gauge(
            "turnout_config_revision", "Configuration revision being served", status["revision"]
        )
        reloads = CounterMetricFamily(
            "turnout_config_reloads", "Configuration reloads", labels=["result"]
        )
        reloads.add_metric(["success"], status["reloads_ok"])
        reloads.add_metric(["failure"], status["reloads_failed"])
        yield reloads
        yield _gauge("turnout_workers", "Live worker processes", status["live_workers"])
        yield _counter(
            "turnout_worker_restarts",
            "Workers replaced after a crash or hang",
            status["worker_restarts"],
        )


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    metric = CounterMetricFamily(name, doc)
    metric.add_metric([], value)
    return metric


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    metric = GaugeMetricFamily(name, doc)
    metric.add_metric([], value)
    return metric


def _backend_events(events: dict[tuple[str, str], int]) -> Iterator[Metric]:
    retries = CounterMetricFamily(
        "turnout_upstream_retries", "Retried upstream attempts", labels=["backend"]
    )
    overflow = CounterMetricFamily(
        "turnout_upstream_overflow",
        "Requests refused with 503 by a circuit-breaker limit or an open breaker",
        labels=["backend", "reason"],
    )
    ejections = CounterMetricFamily(
        "turnout_outlier_ejections",
        "Endpoints ejected by passive health checking (outlier detection)",
        labels=["backend"],
    )
    bans = CounterMetricFamily(
        "turnout_auth_bans",
        "Client addresses banned after repeated failed authentications (SecurityPolicy)",
        labels=["policy"],
    )
    locks = CounterMetricFamily(
        "turnout_auth_consumer_bans",
        "Users locked after repeated failed authentications (SecurityPolicy byConsumer)",
        labels=["policy"],
    )
    transitions = CounterMetricFamily(
        "turnout_circuit_breaker_transitions",
        "Error-rate breaker state changes, by the state entered",
        labels=["backend", "state"],
    )
    for (backend, event), n in sorted(events.items()):
        kind, _, detail = event.partition(":")
        if kind == "retry":
            retries.add_metric([backend], n)
        elif kind == "overflow":
            overflow.add_metric([backend, detail], n)
        elif kind == "ejection":
            ejections.add_metric([backend], n)
        elif kind == "breaker":
            transitions.add_metric([backend, detail], n)
        elif kind == "ban":
            bans.add_metric([backend], n)
        elif kind == "consumer_ban":
            locks.add_metric([backend], n)
    yield retries
    yield overflow
    yield ejections
    yield bans
    yield locks
    yield transitions


def _l4(counts: dict[tuple[str, str, str], int]) -> Iterator[Metric]:
    connections = CounterMetricFamily(
        "turnout_l4_connections",
        "TCP / TLS passthrough connections, by route and the backend chosen",
        labels=["route", "backend"],
    )
    transferred = CounterMetricFamily(
        "turnout_l4_bytes",
        "Bytes piped by L4 routes; upstream = client to backend",
        labels=["route", "direction"],
    )
    refused = CounterMetricFamily(
        "turnout_l4_refused",
        "L4 connections closed without a pipe, by listener and reason",
        labels=["listener", "reason"],
    )
    families = {"connections": connections, "bytes": transferred, "refused": refused}
    for (kind, a, b), n in sorted(counts.items()):
        family = families.get(kind)
        if family is not None:
            family.add_metric([a, b], n)
    yield connections
    yield transferred
    yield refused


def _endpoint_health(health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    healthy = GaugeMetricFamily(
        "turnout_endpoint_healthy",
        "Verdict of the active health checks (1 healthy, 0 unhealthy)",
        labels=["backend", "endpoint"],
    )
    checks = CounterMetricFamily(
        "turnout_health_checks",
        "Active health checks run, by result",
        labels=["backend", "endpoint", "result"],
    )
    for endpoint, st in sorted(health.items()):
        backend = str(st.get("backend", ""))
        healthy.add_metric([backend, endpoint], 1.0 if st.get("healthy") else 0.0)
        failures = int(st.get("failures", 0))
        checks.add_metric([backend, endpoint, "success"], int(st.get("checks", 0)) - failures)
        checks.add_metric([backend, endpoint, "failure"], failures)
    yield healthy
    yield checks


def _cache(agg: Aggregate) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "turnout_cache",
        "Response cache outcomes per TrafficPolicy: hit, miss, stale, bypass, revalidated, "
        "coalesced (requests); stored, redis_hit, evictions (responses)",
        labels=["policy", "outcome"],
    )
    for (zone, outcome), n in sorted(agg.cache.items()):
        requests.add_metric([zone, outcome], n)
    yield requests
    stored = GaugeMetricFamily(
        "turnout_cache_memory",
        "Responses kept in the workers' memory caches (entries, bytes), summed over workers",
        labels=["policy", "unit"],
    )
    for (zone, unit), n in sorted(agg.cache_gauges.items()):
        stored.add_metric([zone, unit], n)
    yield stored


def _usage(agg: Aggregate) -> Iterator[Metric]:
    refusals = CounterMetricFamily(
        "turnout_refusals",
        "Answers the gateway made itself with a 4xx/5xx, by status and reason code "
        "(the JSON body's code: unauthorized, forbidden, rate_limited, upstream_overflow "
        "for an open circuit, no_route, ...)",
        labels=["status", "reason"],
    )
    for (code, reason), n in sorted(agg.refusals.items()):
        refusals.add_metric([str(code), reason], n)
    yield refusals
    plugin_failures = CounterMetricFamily(
        "turnout_plugin_failures",
        "Filter plugin hooks that raised, timed out or returned something other than None "
        "or a LocalReply, by FilterPlugin (namespace/name) and reason (error, timeout, "
        "verdict)",
        labels=["plugin", "reason"],
    )
    for (plugin, reason), n in sorted(agg.plugin_failures.items()):
        plugin_failures.add_metric([plugin, reason], n)
    yield plugin_failures
    keyed = CounterMetricFamily(
        "turnout_sandbox_requests",
        "Requests that carried a Sandbox's or RouteGroup's routing key",
        labels=["key"],
    )
    for key, n in sorted(agg.keyed.items()):
        keyed.add_metric([key], n)
    yield keyed
    requests = CounterMetricFamily(
        "turnout_consumer_requests",
        "Requests per authenticated Consumer (API key, Basic user or JWT subject)",
        labels=["consumer"],
    )
    transferred = CounterMetricFamily(
        "turnout_consumer_bytes",
        "Body bytes per authenticated Consumer; received = from the client",
        labels=["consumer", "direction"],
    )
    for name, (count, received, sent) in sorted(agg.consumers.items()):
        requests.add_metric([name], count)
        transferred.add_metric([name, "received"], received)
        transferred.add_metric([name, "sent"], sent)
    yield requests
    yield transferred


def _certificates(certs: Any) -> Iterator[Metric]:
    expiry = GaugeMetricFamily(
        "turnout_certificate_expiry_timestamp_seconds",
        "When each listener certificate expires (Unix time)",
        labels=["gateway", "listener", "source"],
    )
    for gateway, listener, source, not_after in certs:
        expiry.add_metric([gateway, listener, source], not_after)
    yield expiry


def _tracing(counters: dict[str, int]) -> Iterator[Metric]:
    """The workers' trace export (observe/otlp.py): sent, dropped, failed requests."""
    yield _counter(
        "turnout_trace_spans_exported",
        "Spans the collector accepted",
        counters.get("trace_spans_exported", 0),
    )
    yield _counter(
        "turnout_trace_spans_dropped",
        "Spans dropped: the worker's queue was full or their export failed",
        counters.get("trace_spans_dropped", 0),
    )
    yield _counter(
        "turnout_trace_export_failures",
        "Export requests to the collector that failed",
        counters.get("trace_export_failures", 0),
    )
