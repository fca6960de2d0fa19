"""A Runbook's ``conditions``: checks over live gateway metrics when a run starts.

``MetricHistory`` keeps, per route, readings of this replica's cumulative counters
(``ctx.observe()``, the data internal signals use: 5xx and all upstream answers, the
gateway's own answers left out) taken at most once a second by the remediation
reconciler, for the last ``MAX_WINDOW`` seconds. ``unmet`` renders each condition's
route with the alert's labels and compares the newest reading with the oldest one
inside the window: the first condition not met is the reason the run is skipped. A
leader that has just started has less history than the window: it judges on what it has
(at least one second), and a condition it cannot judge yet (no reading of the route,
fewer answers than ``minRequests``) is not met.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Final

from turnout.config.model.remediation import MetricCondition
from turnout.control.remediation.plan import PlanError, render
from turnout.control.remediation.signals import ERRORS
from turnout.core.durations import parse_duration
from turnout.observe.metrics import Aggregate

MAX_WINDOW: Final = 600.0
MAX_ROUTES: Final = 10_000


class MetricHistory:
    def __init__(self) -> None:
        self._routes: dict[str, deque[tuple[float, int, int]]] = {}  # (t, 5xx, all)
        self._last = float("-inf")

    def observe(self, agg: Aggregate, now: float) -> None:
        if now - self._last < 1.0:
            return
        self._last = now
        sums: dict[str, list[int]] = {}
        for (label, backend), t in agg.routes.items():
            if backend:  # upstream answers only
                s = sums.setdefault(label, [0, 0])
                s[0] += t.codes[ERRORS]
                s[1] += sum(t.codes)
        for label, (errors, answers) in sums.items():
            samples = self._routes.get(label)
            if samples is None:
                if len(self._routes) >= MAX_ROUTES:
                    continue
                samples = self._routes[label] = deque()
            samples.append((now, errors, answers))
            while len(samples) > 2 and samples[1][0] <= now - MAX_WINDOW:
                samples.popleft()

    def delta(self, route: str, window: float, now: float) -> tuple[int, int] | None:
        """(5xx, answers) of ``route`` over the last ``window`` seconds; None without
        two readings."""
        samples = self._routes.get(route)
        if not samples or len(samples) < 2:
            return None
        base = samples[0]
        for sample in samples:  # the newest reading at least ``window`` old, if any
            if sample[0] > now - window:
                break
            base = sample
        newest = samples[-1]
        if base is newest:
            base = samples[-2]
        return newest[1] - base[1], newest[2] - base[2]


def unmet(
    conditions: Sequence[MetricCondition],
    labels: dict[str, str],
    namespace: str,
    history: MetricHistory,
    now: float,
) -> str | None:
    """Why the run may not start (the first condition not met), or None."""
    for cond in conditions:
        try:
            route = f"{namespace}/{render(cond.route, {'namespace': namespace, **labels})}"
        except PlanError as exc:
            return f"condition on {cond.route!r}: {exc}"
        window = min(parse_duration(cond.window), MAX_WINDOW)
        seen = history.delta(route, window, now)
        if seen is None:
            return f"condition not met: no readings of route {route} yet"
        errors, answers = seen
        if answers < cond.min_requests:
            return (
                f"condition not met: route {route} had {answers} answers in {cond.window}, "
                f"fewer than minRequests {cond.min_requests}"
            )
        rate = errors / answers if answers else 0.0
        said = f"route {route} error rate is {rate:.1%} over {cond.window}"
        if cond.error_rate_above is not None and not rate > cond.error_rate_above:
            return f"condition not met: {said} (want > {cond.error_rate_above:.1%})"
        if cond.error_rate_below is not None and not rate < cond.error_rate_below:
            return f"condition not met: {said} (want < {cond.error_rate_below:.1%})"
    return None
