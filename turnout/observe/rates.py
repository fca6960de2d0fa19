"""Rates from two scrapes of ``/metrics``: RPS, 5xx share, p50/p99 per route or backend.

``parse`` reads the Prometheus text the admin listener serves (the supervisor's sum over
its workers) into cumulative counts; ``rows`` turns two of them into per-interval rates,
estimating quantiles from the latency histogram's bucket deltas exactly as PromQL's
``histogram_quantile`` does (linear within a bucket). ``turnout top`` and the web
console's overview both use it, so they show the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

SORTS = ("rps", "errors", "p50", "p99", "requests", "name")
GROUPINGS = ("route", "backend", "pair")
HEADERS = ("NAME", "RPS", "ERR%", "P50", "P99", "REQUESTS")

Key = tuple[str, str]  # (route, backend)


@dataclass(slots=True)
class Sample:
    """One scrape: cumulative counts by (route, backend)."""

    at: float
    codes: dict[Key, dict[str, float]] = field(default_factory=dict)
    buckets: dict[Key, dict[float, float]] = field(default_factory=dict)  # le -> cumulative
    gauges: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Row:
    name: str
    rps: float
    errors: float  # share of 5xx in the interval (0..1); NaN without requests
    p50: float  # seconds; NaN without requests
    p99: float
    requests: float  # cumulative

    def cells(self) -> list[str]:
        return [
            self.name,
            f"{self.rps:.1f}",
            "-" if math.isnan(self.errors) else f"{self.errors * 100:.1f}",
            ms(self.p50),
            ms(self.p99),
            f"{self.requests:.0f}",
        ]


def parse(text: str, at: float) -> Sample:
    sample = Sample(at)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            key = (labels.get("route", ""), labels.get("backend", ""))
            if s.name == "turnout_requests_total":
                sample.codes.setdefault(key, {})[labels["code"]] = s.value
            elif s.name == "turnout_request_duration_seconds_bucket":
                sample.buckets.setdefault(key, {})[float(labels["le"])] = s.value
            elif not labels and family.type == "gauge":
                sample.gauges[s.name] = s.value
    return sample


def quantile(q: float, buckets: dict[float, float]) -> float:
    """``histogram_quantile`` over cumulative ``buckets`` (le -> count)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the +Inf bucket: the highest finite bound
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def rows(prev: Sample, cur: Sample, by: str) -> list[Row]:
    dt = max(cur.at - prev.at, 1e-6)
    groups: dict[str, list[Key]] = {}
    for key in cur.codes:
        route, backend = key
        if not route and not backend:
            name = "(no route)"  # 404s and requests refused before routing
        else:
            pair = f"{route or '-'} → {backend or '-'}"
            name = {"route": route, "backend": backend}.get(by, pair) or "-"
        groups.setdefault(name, []).append(key)
    out = []
    for name, keys in groups.items():
        total = sum(sum(cur.codes[k].values()) for k in keys)
        before = sum(sum(prev.codes.get(k, {}).values()) for k in keys)
        errors = sum(cur.codes[k].get("5xx", 0) - prev.codes.get(k, {}).get("5xx", 0) for k in keys)
        delta: dict[float, float] = {}
        for k in keys:
            for le, n in cur.buckets.get(k, {}).items():
                delta[le] = delta.get(le, 0.0) + n - prev.buckets.get(k, {}).get(le, 0.0)
        done = total - before
        out.append(
            Row(
                name,
                done / dt,
                errors / done if done else math.nan,
                quantile(0.5, delta),
                quantile(0.99, delta),
                total,
            )
        )
    return out


def sort_rows(items: list[Row], by: str) -> list[Row]:
    if by == "name":
        return sorted(items, key=lambda r: r.name)

    def value(row: Row) -> float:
        v: float = getattr(row, by)
        return -math.inf if math.isnan(v) else v

    return sorted(items, key=lambda r: (-value(r), r.name))


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}ms"
