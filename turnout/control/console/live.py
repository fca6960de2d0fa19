"""Live traffic numbers for the overview: rates per route from ``/metrics`` scrapes.

The overview polls; each poll calls ``tick``, which scrapes the admin app's own
Prometheus text (the supervisor's sum over its workers, the text ``/metrics`` serves)
at most once per ``every`` seconds and keeps the last ``keep`` scrapes. Rates come from
``observe.rates`` exactly as ``turnout top`` computes them; the chart series are the
rates between consecutive scrapes. One sampler serves every browser, so ten open
consoles cost one scrape a second, not ten.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from turnout.observe.rates import Row, Sample, parse, rows, sort_rows

POINTS = 60


def _num(x: float, scale: float = 1.0) -> float | None:
    return None if math.isnan(x) else round(x * scale, 3)


class LiveRates:
    def __init__(
        self,
        scrape: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
        every: float = 1.0,
        keep: int = POINTS,
    ) -> None:
        self.scrape = scrape
        self.clock = clock
        self.every = every
        self.samples: deque[Sample] = deque(maxlen=keep)
        self.points: deque[tuple[float, list[Row]]] = deque(maxlen=keep)

    def tick(self) -> None:
        now = self.clock()
        if self.samples and now - self.samples[-1].at < self.every:
            return
        sample = parse(self.scrape(), now)
        if self.samples:
            self.points.append((now, rows(self.samples[-1], sample, "route")))
        self.samples.append(sample)

    def table(self, window: float = 5.0) -> list[Row]:
        """Rows per route over the last ``window`` seconds (or what there is)."""
        if len(self.samples) < 2:
            return []
        cur = self.samples[-1]
        prev = next(s for s in self.samples if s.at >= cur.at - window - 1e-9)
        if prev is cur:
            prev = self.samples[-2]
        return sort_rows(rows(prev, cur, "route"), "name")

    def gauges(self) -> dict[str, float]:
        return dict(self.samples[-1].gauges) if self.samples else {}

    def series(self) -> dict[str, Any]:
        """``{"t": [seconds ago...], "routes": {name: {"rps", "errors", "p99"}}}``."""
        now = self.clock()
        names = sorted({r.name for _, rs in self.points for r in rs})
        out: dict[str, dict[str, list[float | None]]] = {
            n: {"rps": [], "errors": [], "p99": []} for n in names
        }
        for _, rs in self.points:
            by = {r.name: r for r in rs}
            for n in names:
                r = by.get(n)
                out[n]["rps"].append(_num(r.rps) if r else None)
                out[n]["errors"].append(_num(r.errors, 100) if r else None)
                out[n]["p99"].append(_num(r.p99, 1000) if r else None)
        return {"t": [round(t - now, 1) for t, _ in self.points], "routes": out}
