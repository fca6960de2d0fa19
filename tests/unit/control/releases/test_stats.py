"""The statistics of release analysis: the confidence sequence, guards and percentiles."""

from __future__ import annotations

from turnout.control.releases.stats import (
    Judgement,
    Window,
    combine,
    half_width,
    judge_latency,
    judge_success,
    percentile,
)
from turnout.observe.stats import LATENCY_BOUNDS


def window(requests: int, failures: int) -> Window:
    return Window(requests=requests, failures=failures)


def judge(cand: Window, stable: Window, **kw: float) -> Judgement:
    args: dict[str, float] = {"min_samples": 20, "tolerance": 0.01, "alpha": 0.01, **kw}
    return judge_success(
        cand,
        stable,
        min_samples=int(args["min_samples"]),
        tolerance=args["tolerance"],
        alpha=args["alpha"],
    )


def test_a_failing_candidate_fails_at_the_minimum_sample() -> None:
    j = judge(window(20, 20), window(200, 0))
    assert j.outcome == "fail"
    assert j.low > 0.01
    assert "20/20" in j.message and "0/200" in j.message


def test_below_the_minimum_sample_is_inconclusive_with_the_counts_never_fail() -> None:
    j = judge(window(19, 19), window(1000, 0))
    assert j.outcome == "inconclusive"
    assert "low traffic: 19 candidate requests < minSamples 20" in j.message


def test_zero_failures_on_both_sides_passes_with_enough_samples_and_is_never_nan() -> None:
    j = judge(window(5000, 0), window(5000, 0))
    assert j.outcome == "pass"
    assert j.low == j.low and j.high == j.high  # not NaN
    few = judge(window(30, 0), window(30, 0))
    assert few.outcome == "inconclusive"  # too few to show it is within 1 %


def test_a_missing_baseline_judges_the_candidate_rate_absolutely() -> None:
    j = judge(window(3000, 0), window(3, 0))
    assert j.outcome == "pass"
    assert "no baseline" in j.message
    bad = judge(window(300, 60), window(0, 0))
    assert bad.outcome == "fail"


def test_equal_rates_do_not_fail_at_any_checkpoint() -> None:
    # The same 2 % failure rate on both sides, checked after every 50 requests (peeking):
    # the always-valid bound never reports a failure.
    for n in range(50, 20001, 50):
        j = judge(window(n, n // 50), window(n * 9, n * 9 // 50))
        assert j.outcome != "fail", n


def test_the_bound_narrows_as_the_variance_falls() -> None:
    assert half_width(0.001, 0.01) > half_width(0.0001, 0.01) > half_width(0.00001, 0.01)
    assert half_width(0.0, 0.01) == float("inf")


def test_window_add_diffs_cumulative_readings_and_ignores_a_reset() -> None:
    w = Window()
    nb = len(LATENCY_BOUNDS) + 1
    zero = [0] * nb
    w.add(None, [0, 0, 10, 0, 0, 2], None, [12, *zero[1:]], ("5xx", "0xx"))
    w.add(
        [0, 0, 10, 0, 0, 2], [1, 0, 15, 0, 3, 4], [12, *zero[1:]], [23, *zero[1:]], ("5xx", "0xx")
    )
    assert (w.requests, w.failures, w.buckets[0]) == (23, 5, 23)
    w.add([1, 0, 15, 0, 3, 4], [0, 0, 1, 0, 0, 0], None, zero, ("5xx",))  # went backwards
    assert w.requests == 23


def test_percentile_interpolates_within_a_bucket() -> None:
    buckets = [0] * (len(LATENCY_BOUNDS) + 1)
    buckets[4] = 100  # all between LATENCY_BOUNDS[3] and [4]
    p50 = percentile(buckets, 50)
    assert p50 is not None
    assert LATENCY_BOUNDS[3] < p50 < LATENCY_BOUNDS[4]
    assert percentile([0] * len(buckets), 99) is None
    overflow = [0] * len(buckets)
    overflow[-1] = 5
    assert percentile(overflow, 99) == LATENCY_BOUNDS[-1]


def test_latency_fails_over_the_ratio_and_the_max() -> None:
    slow, fast = Window(requests=100), Window(requests=100)
    slow.buckets[8] = 100
    fast.buckets[2] = 100
    j = judge_latency(slow, fast, min_samples=50, q=99, max_seconds=None, max_ratio=1.5)
    assert j.outcome == "fail" and "x stable" in j.message
    j = judge_latency(fast, fast, min_samples=50, q=99, max_seconds=0.0001, max_ratio=None)
    assert j.outcome == "fail" and "> max" in j.message
    j = judge_latency(fast, slow, min_samples=50, q=99, max_seconds=None, max_ratio=1.5)
    assert j.outcome == "pass"


def test_combine_ignores_dry_run_metrics() -> None:
    failing = Judgement("latencyP99", "fail", "slow", dry_run=True)
    passing = Judgement("successRate", "pass", "ok")
    assert combine([failing, passing]) == "pass"
    assert combine([Judgement("x", "fail", ""), passing]) == "fail"
    assert combine([Judgement("x", "inconclusive", ""), passing]) == "inconclusive"


def test_release_metrics_expose_phase_weight_and_step() -> None:
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry, generate_latest

    from turnout.control.releases.metrics import ReleaseCollector
    from turnout.control.releases.state import STATE_ANNOTATION, ReleaseState
    from turnout.control.store.records import StoredObject

    now = datetime.now(UTC)
    state = ReleaseState(phase="Degraded", step=1, weight=0)
    obj = StoredObject(
        "Release", "default", "orders-v2", "turnout.dev/v1alpha1", {},
        {STATE_ANNOTATION: state.to_json()}, {}, None, 3, 1, now, now,
    )  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReleaseCollector(lambda: [obj]))
    text = generate_latest(registry).decode()
    assert (
        'turnout_release_phase{namespace="default",phase="Degraded",release="orders-v2"} 1.0'
        in text
    )
    assert (
        'turnout_release_phase{namespace="default",phase="Promoted",release="orders-v2"} 0.0'
        in text
    )
    assert 'turnout_release_step{namespace="default",release="orders-v2"} 1.0' in text
