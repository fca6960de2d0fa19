"""``ReleaseCollector``: the ``turnout_release_*`` Prometheus metrics, read from the
stored Releases' state when ``/metrics`` is scraped (nothing is kept between scrapes).

- ``turnout_release_phase{namespace, release, phase}``: 1 for the current phase, 0 for
  the others (so an alert can watch ``phase="Degraded"``);
- ``turnout_release_weight{namespace, release}``: percent of keyed traffic on the
  candidate;
- ``turnout_release_step{namespace, release}``: the current step (0-based).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from turnout.control.releases.state import PHASES, ReleaseState
from turnout.control.store.records import StoredObject


class ReleaseCollector(Collector):
    def __init__(self, objects: Callable[[], Iterable[StoredObject]]) -> None:
        self._objects = objects

    def collect(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily(
            "turnout_release_phase",
            "1 for the phase each Release is in, 0 for the others",
            labels=["namespace", "release", "phase"],
        )
        weight = GaugeMetricFamily(
            "turnout_release_weight",
            "Percent of split traffic each Release sends to its candidate",
            labels=["namespace", "release"],
        )
        step = GaugeMetricFamily(
            "turnout_release_step",
            "The step each Release is at (0-based)",
            labels=["namespace", "release"],
        )
        for obj in sorted(self._objects(), key=lambda o: o.key):
            if obj.kind != "Release":
                continue
            state = ReleaseState.from_annotations(obj.annotations) or ReleaseState()
            for name in PHASES:
                phase.add_metric(
                    [obj.namespace, obj.name, name], 1.0 if name == state.phase else 0.0
                )
            weight.add_metric([obj.namespace, obj.name], state.weight)
            step.add_metric([obj.namespace, obj.name], state.step)
        yield phase
        yield weight
        yield step
