"""Per-release analysis windows fed from cumulative data-plane counters.

The reconciler reads the aggregate (``Context.observe()``: per (route, backend label)
``RouteTotals``, cumulative) at every tick; a ``Tracker`` diffs each (route, label)
against its previous reading and adds the difference to the windows of the version the
label belongs to: the *run* window (since the release run started; continuous
judgement) and the *step* window (since the current step began; analysis steps), each
also per route (``analysis.perRoute``). The
first reading after the tracker is created is a baseline only. Windows live in memory:
after a restart or a leader change the release resumes at its persisted step and its
windows start again from that moment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from turnout.control.releases.stats import Window
from turnout.observe.metrics import RouteTotals


@dataclass(slots=True)
class Versions:
    candidate: Window = field(default_factory=Window)
    stable: Window = field(default_factory=Window)


@dataclass(slots=True)
class Tracker:
    stable_label: str
    candidate_label: str
    failure_classes: Sequence[str]
    run_id: tuple[int, int] = (0, 0)  # (generation, run) the run window belongs to
    step: int = -1
    run: Versions = field(default_factory=Versions)
    step_window: Versions = field(default_factory=Versions)
    last: dict[tuple[str, ...], tuple[list[int], list[int]]] = field(default_factory=dict)
    primed: bool = False
    # The same windows per route (the key's part before the label), for perRoute.
    route_runs: dict[str, Versions] = field(default_factory=dict)
    route_steps: dict[str, Versions] = field(default_factory=dict)

    def follow(self, run_id: tuple[int, int], step: int) -> None:
        """Start new windows when the run or the step changed."""
        if run_id != self.run_id:
            self.run_id = run_id
            self.run = Versions()
            self.route_runs = {}
            self.step = -1
        if step != self.step:
            self.step = step
            self.step_window = Versions()
            self.route_steps = {}

    def read(self, routes: Mapping[Any, RouteTotals]) -> None:
        """``routes``: cumulative totals by (..., backend label) keys, e.g. (route,
        backend) for one replica or (replica, route, backend) across replicas."""
        for key, totals in routes.items():
            label = key[-1]
            if label != self.candidate_label and label != self.stable_label:
                continue
            route = str(key[-2]) if len(key) >= 2 else ""
            run = self.route_runs.setdefault(route, Versions())
            step = self.route_steps.setdefault(route, Versions())
            if label == self.candidate_label:
                windows = (
                    self.run.candidate,
                    self.step_window.candidate,
                    run.candidate,
                    step.candidate,
                )
            else:
                windows = (self.run.stable, self.step_window.stable, run.stable, step.stable)
            prev = self.last.get(key)
            codes, buckets = list(totals.codes), list(totals.buckets)
            self.last[key] = (codes, buckets)
            if not self.primed:
                continue
            for window in windows:
                window.add(
                    prev[0] if prev else None,
                    codes,
                    prev[1] if prev else None,
                    buckets,
                    self.failure_classes,
                )
        self.primed = True
