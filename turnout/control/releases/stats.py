"""The statistics of release analysis: pure functions over per-version counts.

``Window`` accumulates one version's requests, failures and latency buckets from the
workers' cumulative counters (``Window.add`` takes the difference of two readings; a
reading that went backwards, counters reset, adds nothing).

``judge_success`` compares the candidate's failure rate with stable's by an
*always-valid* confidence sequence for the difference of two proportions: the normal
mixture (mSPRT) boundary of Johari, Pekelis & Walsh, "Always Valid Inference" (2017),
``half-width = sqrt(V (V + tau²) / tau² · (2 ln(1/alpha) + ln((V + tau²) / V)))`` with
``V`` the variance of the difference. Because it holds at every sample size at once, it
may be checked after every reading and stop as soon as it is conclusive, with the false
alarm rate still at most ``alpha`` (no peeking penalty). Rates are smoothed (``(f+1) /
(n+2)``) in the variance so that zero failures on either side never give a zero
variance (Kayenta's NaN baseline, spinnaker/kayenta#377). A missing baseline (stable
below the minimum sample) judges the candidate's own rate against the tolerance as an
absolute rate and says so. Below ``min_samples`` candidate requests the verdict is
``inconclusive`` with the counts, never ``fail``: low traffic pauses, it does not abort.

``percentile`` estimates a latency percentile from the histogram buckets (linear within
the bucket; the overflow bucket answers its lower bound).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from turnout.observe.metrics import CODE_CLASSES
from turnout.observe.stats import LATENCY_BOUNDS

Outcome = Literal["pass", "fail", "inconclusive"]

# The mixing scale of the mSPRT prior: effects of this size are detected fastest.
TAU: Final = 0.05


@dataclass(slots=True)
class Window:
    """One version's counts since a point in time."""

    requests: int = 0
    failures: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))

    def add(
        self,
        before: Sequence[int] | None,
        after: Sequence[int],
        buckets_before: Sequence[int] | None,
        buckets_after: Sequence[int],
        failure_classes: Sequence[str],
    ) -> None:
        """Add the requests between two cumulative readings of status-class counts
        (``CODE_CLASSES`` order) and latency buckets; ``before`` None counts from zero.
        A reading that went backwards (counters reset) adds nothing."""
        if before is None:
            before = [0] * len(after)
            buckets_before = None
        elif any(a < b for a, b in zip(after, before, strict=True)):
            return
        delta = [a - b for a, b in zip(after, before, strict=True)]
        self.requests += sum(delta)
        self.failures += sum(delta[CODE_CLASSES.index(c)] for c in failure_classes)
        base = buckets_before if buckets_before is not None else [0] * len(buckets_after)
        for i, (a, b) in enumerate(zip(buckets_after, base, strict=True)):
            self.buckets[i] += max(a - b, 0)

    @property
    def rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Judgement:
    metric: str
    outcome: Outcome
    message: str  # the reason, in numbers
    candidate: float = 0.0
    stable: float = 0.0
    low: float = 0.0
    high: float = 0.0
    dry_run: bool = False


def half_width(variance: float, alpha: float, tau: float = TAU) -> float:
    """Half-width of the normal-mixture confidence sequence at this variance."""
    if variance <= 0.0:
        return math.inf
    t2 = tau * tau
    return math.sqrt(
        variance
        * (variance + t2)
        / t2
        * (2 * math.log(1 / alpha) + math.log((variance + t2) / variance))
    )


def _smoothed_variance(failures: int, n: int) -> float:
    p = (failures + 1) / (n + 2)
    return p * (1 - p) / n


def judge_success(
    candidate: Window,
    stable: Window,
    *,
    min_samples: int,
    tolerance: float,
    alpha: float,
    dry_run: bool = False,
) -> Judgement:
    n1, n0 = candidate.requests, stable.requests
    counts = f"candidate {candidate.failures}/{n1} failed, stable {stable.failures}/{n0}"
    if n1 < min_samples:
        return Judgement(
            "successRate",
            "inconclusive",
            f"low traffic: {n1} candidate requests < minSamples {min_samples} ({counts})",
            candidate.rate,
            stable.rate,
            dry_run=dry_run,
        )
    if n0 < min_samples:
        # No usable baseline: the candidate's own failure rate against the tolerance.
        diff = candidate.rate
        variance = _smoothed_variance(candidate.failures, n1)
        basis = "no baseline (stable below minSamples): candidate failure rate"
    else:
        diff = candidate.rate - stable.rate
        variance = _smoothed_variance(candidate.failures, n1) + _smoothed_variance(
            stable.failures, n0
        )
        basis = "failure-rate difference (candidate - stable)"
    hw = half_width(variance, alpha)
    low, high = diff - hw, diff + hw
    interval = f"{basis} {diff:.4f} in [{low:.4f}, {high:.4f}] at {1 - alpha:.0%}"
    if low > tolerance:
        outcome: Outcome = "fail"
        message = f"{interval} exceeds tolerance {tolerance} ({counts})"
    elif high <= tolerance:
        outcome = "pass"
        message = f"{interval} within tolerance {tolerance} ({counts})"
    else:
        outcome = "inconclusive"
        message = f"undecided: {interval}, tolerance {tolerance} ({counts})"
    return Judgement(
        "successRate", outcome, message, candidate.rate, stable.rate, low, high, dry_run
    )


def percentile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q``-th percentile (0-100) in seconds, or None without samples."""
    total = sum(buckets)
    if not total:
        return None
    rank = q / 100 * total
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= rank:
            if i >= len(LATENCY_BOUNDS):
                return LATENCY_BOUNDS[-1]
            lower = LATENCY_BOUNDS[i - 1] if i else 0.0
            return lower + (LATENCY_BOUNDS[i] - lower) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS[-1]


def judge_latency(
    candidate: Window,
    stable: Window,
    *,
    min_samples: int,
    q: float,
    max_seconds: float | None,
    max_ratio: float | None,
    dry_run: bool = False,
) -> Judgement:
    name = f"latencyP{q:g}"
    if candidate.requests < min_samples:
        return Judgement(
            name,
            "inconclusive",
            f"low traffic: {candidate.requests} candidate requests < minSamples {min_samples}",
            dry_run=dry_run,
        )
    mine = percentile(candidate.buckets, q) or 0.0
    base = percentile(stable.buckets, q) if stable.requests >= min_samples else None
    sizes = f"n={candidate.requests} vs {stable.requests}"
    if max_seconds is not None and mine > max_seconds:
        return Judgement(
            name,
            "fail",
            f"p{q:g} {mine * 1000:.1f} ms > max {max_seconds * 1000:.1f} ms ({sizes})",
            mine,
            base or 0.0,
            dry_run=dry_run,
        )
    if max_ratio is not None and base is not None:
        # A floor of the first bucket: a ratio to ~0 ms means nothing.
        floor = max(base, LATENCY_BOUNDS[0])
        if mine > max_ratio * floor:
            return Judgement(
                name,
                "fail",
                f"p{q:g} {mine * 1000:.1f} ms > {max_ratio:g} x stable "
                f"{base * 1000:.1f} ms ({sizes})",
                mine,
                base,
                dry_run=dry_run,
            )
    shown = f"{base * 1000:.1f} ms" if base is not None else "no baseline"
    return Judgement(
        name,
        "pass",
        f"p{q:g} {mine * 1000:.1f} ms vs stable {shown} ({sizes})",
        mine,
        base or 0.0,
        dry_run=dry_run,
    )


def combine(judgements: Sequence[Judgement]) -> Outcome:
    """Fail if any non-dry-run metric fails; pass if all pass; else inconclusive."""
    binding = [j for j in judgements if not j.dry_run]
    if any(j.outcome == "fail" for j in binding):
        return "fail"
    if all(j.outcome == "pass" for j in binding):
        return "pass"
    return "inconclusive"
