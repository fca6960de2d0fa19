"""``turnout top``: live RPS, error share, p50/p99 and connections per route or backend.

Reads the server's ``/metrics`` (the supervisor's sum over its workers) twice, ``--interval``
apart, and shows the difference: requests per second, the share of 5xx, and p50/p99
estimated from the latency histogram's bucket deltas exactly as PromQL's
``histogram_quantile`` does (linear within a bucket). ``--once`` prints one frame and
exits (scripts, tests); otherwise a Rich ``Live`` table redraws in place until Ctrl-C.
``--by route|backend|pair`` picks the rows, ``--sort`` the column (descending; ``name``
ascending).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from turnout.cli.client import connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection

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
            _ms(self.p50),
            _ms(self.p99),
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


def render(items: list[Row], cur: Sample, interval: float) -> Group:
    g = cur.gauges
    summary = Text(
        f"revision {g.get('turnout_config_revision', 0):.0f}   "
        f"workers {g.get('turnout_workers', 0):.0f}   "
        f"open connections {g.get('turnout_downstream_connections_active', 0):.0f}   "
        f"rps {sum(r.rps for r in items):.1f}   (over {interval:g} s)"
    )
    table = Table(box=None, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for row in items:
        table.add_row(*row.cells())
    return Group(summary, table)


def top(conn: Connection, by: str, sort: str, interval: float, once: bool, limit: int) -> None:
    if by not in GROUPINGS:
        raise CliError(f"--by {by!r}: expected one of {', '.join(GROUPINGS)}")
    if sort not in SORTS:
        raise CliError(f"--sort {sort!r}: expected one of {', '.join(SORTS)}")
    if not 0.1 <= interval <= 3600:
        raise CliError(f"--interval {interval:g}: expected 0.1 to 3600 seconds")
    console = Console(highlight=False)
    with connect(conn) as client:

        def scrape() -> Sample:
            return parse(client.get_text("/metrics"), time.monotonic())

        prev = scrape()
        time.sleep(interval)
        cur = scrape()
        frame = _framer(by, sort, interval, limit)
        if once:
            console.print(frame(prev, cur))
            return
        with Live(frame(prev, cur), console=console, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    prev, cur = cur, scrape()
                    live.update(frame(prev, cur), refresh=True)
            except KeyboardInterrupt:
                return


def _framer(by: str, sort: str, interval: float, limit: int) -> Callable[[Sample, Sample], Group]:
    def frame(prev: Sample, cur: Sample) -> Group:
        return render(sort_rows(rows(prev, cur, by), sort)[:limit], cur, interval)

    return frame


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}ms"
