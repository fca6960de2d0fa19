"""A Release's measurements as JSON: Turnout's own numbers in a shape an Argo Rollouts
``web`` metric provider (or any JSON consumer) can judge, e.g.
``successCondition: result.candidate.successRate >= 0.99`` with
``jsonPath: "{$}"``.

The counts are the cumulative totals of every live replica (``ReplicaObservations
.read``) since each replica's start, per version and summed over routes; the verdict is
the same sequential test the reconciler runs, applied to those totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from turnout.config.model.release import ReleaseSpec, version_labels
from turnout.control.releases.stats import Window, judge_success, percentile
from turnout.observe.metrics import RouteTotals


def _window(routes: Mapping[Any, RouteTotals], label: str, classes: tuple[str, ...]) -> Window:
    w = Window()
    for key, totals in routes.items():
        if key[-1] == label:
            w.add(None, totals.codes, None, totals.buckets, classes)
    return w


def _version(label: str, w: Window) -> dict[str, Any]:
    p50, p99 = percentile(w.buckets, 50), percentile(w.buckets, 99)
    return {
        "backend": label,
        "requests": w.requests,
        "failures": w.failures,
        "successRate": (1 - w.rate) if w.requests else None,
        "latencyP50Seconds": p50,
        "latencyP99Seconds": p99,
    }


def measurements(
    namespace: str, name: str, spec: ReleaseSpec, routes: Mapping[Any, RouteTotals]
) -> dict[str, Any]:
    stable_label, candidate_label = version_labels(namespace, name, spec)
    classes = tuple(spec.analysis.success_rate.failure_classes)
    stable = _window(routes, stable_label, classes)
    candidate = _window(routes, candidate_label, classes)
    sr = spec.analysis.success_rate
    verdict = judge_success(
        candidate,
        stable,
        min_samples=spec.analysis.min_samples,
        tolerance=sr.tolerance,
        alpha=sr.alpha,
    )
    return {
        "release": f"{namespace}/{name}",
        "stable": _version(stable_label, stable),
        "candidate": _version(candidate_label, candidate),
        "verdict": verdict.outcome,
        "reason": verdict.message,
    }
