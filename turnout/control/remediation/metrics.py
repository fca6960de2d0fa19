"""``BreakerCollector``: the remediation circuit breakers in ``/metrics``.

``turnout_remediation_breaker_state{breaker}`` (0 closed, 1 half-open, 2 open) and
``turnout_remediation_breaker_transitions_total{breaker,from,to}``, read from the
remediation reconciler's breakers at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from turnout.control.remediation.breaker import CLOSED, HALF_OPEN, OPEN, Breakers

STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class BreakerCollector(Collector):
    def __init__(self, breakers: Callable[[], Breakers | None]) -> None:
        self._breakers = breakers

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "turnout_remediation_breaker_state",
            "Circuit breaker of a remediation dependency: 0 closed, 1 half-open, 2 open",
            labels=["breaker"],
        )
        moves = CounterMetricFamily(
            "turnout_remediation_breaker_transitions",
            "Circuit breaker state changes",
            labels=["breaker", "from", "to"],
        )
        breakers = self._breakers()
        for b in breakers.by_name.values() if breakers is not None else ():
            state.add_metric([b.name], STATE_VALUE[b.state])
            for key, count in sorted(b.transitions.items()):
                src, _, dst = key.partition("->")
                moves.add_metric([b.name, src, dst], count)
        yield state
        yield moves
