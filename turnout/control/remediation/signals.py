"""Internal signals: a Runbook's ``signal`` rule over the gateway's own counters.

The leader's remediation reconciler calls ``SignalWatch.evaluate`` for a Runbook with a
``signal`` at least once a second. It reads this replica's aggregate (``ctx.observe()``,
cumulative per (route, backend) status classes), keeps the readings of the last
``window`` and compares the newest with the oldest: more than ``errorRateAbove`` 5xx
among at least ``minRequests`` upstream answers fires. The gateway's own answers (the
route's cell without a backend: a shed 503, a fault abort) are left out, so a shedding
mitigation does not keep the signal firing by itself.

A firing signal becomes an alert (source ``internal``) whose ``startsAt`` is the moment
the condition began: while it stays true, every evaluation is the same alert and plans
no second run; the next time it fires is a new alert (subject to the cooldown).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from turnout.config.model.remediation import InternalSignal
from turnout.control.store.remediation_records import AlertRecord
from turnout.core.durations import parse_duration
from turnout.observe.metrics import Aggregate

ERRORS = 5  # index of 5xx in RouteTotals.codes


@dataclass(slots=True)
class _State:
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)  # (t, 5xx, all)
    since: float | None = None


def totals(agg: Aggregate, route: str) -> tuple[int, int]:
    """(5xx, all) upstream answers of ``route`` ("namespace/name")."""
    errors = answers = 0
    for (label, backend), t in agg.routes.items():
        if label == route and backend:
            errors += t.codes[ERRORS]
            answers += sum(t.codes)
    return errors, answers


class SignalWatch:
    def __init__(self) -> None:
        self._state: dict[tuple[str, str], _State] = {}

    def evaluate(
        self, namespace: str, name: str, signal: InternalSignal, agg: Aggregate, now: float
    ) -> AlertRecord | None:
        """The alert while the signal fires (the same one each time), else None."""
        state = self._state.setdefault((namespace, name), _State())
        errors, answers = totals(agg, f"{namespace}/{signal.route}")
        state.samples.append((now, errors, answers))
        window = parse_duration(signal.window)
        while len(state.samples) > 2 and state.samples[1][0] <= now - window:
            state.samples.popleft()
        _, errors0, answers0 = state.samples[0]
        d_answers = answers - answers0
        rate = (errors - errors0) / d_answers if d_answers > 0 else 0.0
        if d_answers < signal.min_requests or rate <= signal.error_rate_above:
            state.since = None
            return None
        if state.since is None:
            state.since = now
        return _alert(namespace, name, signal, state.since, rate)

    def forget(self, namespace: str, name: str) -> None:
        self._state.pop((namespace, name), None)


def _alert(
    namespace: str, name: str, signal: InternalSignal, since: float, rate: float
) -> AlertRecord:
    fingerprint = hashlib.sha256(f"{namespace}/{name}/{signal.route}".encode()).hexdigest()[:16]
    starts = datetime.fromtimestamp(since, UTC)
    key = hashlib.sha256(f"internal\x1f{fingerprint}\x1f{starts.isoformat()}".encode()).hexdigest()
    return AlertRecord(
        dedup_key=key,
        group_key=f"internal:{namespace}/{name}",
        fingerprint=fingerprint,
        status="firing",
        alertname=signal.alertname,
        labels={
            "alertname": signal.alertname,
            "namespace": namespace,
            "route": signal.route,
            "source": "turnout",
        },
        annotations={"summary": f"{rate:.0%} of {namespace}/{signal.route} answers are 5xx"},
        starts_at=starts,
        ends_at=None,
        source="internal",
    )
