"""Token bucket and sliding-window counter math, with explicit times (no clock, no I/O).

Besides worked examples, hypothesis checks the defining invariants over random request
sequences: a token bucket never allows more than ``burst + rate * elapsed`` in any
interval, a sliding window never allows more than ``requests`` inside one aligned window,
and a denied request retried after exactly ``retry_after`` seconds is allowed.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.proxy.ratelimit.algorithms import Algorithm, Decision, SlidingWindow, TokenBucket


class Run:
    """Drive one algorithm's state through a sequence of calls."""

    def __init__(self, algorithm: Algorithm) -> None:
        self.algorithm = algorithm
        self.state = [0.0, 0.0, 0.0]

    def __call__(self, now: float, cost: int = 1) -> Decision:
        return self.algorithm.step(self.state, 0, now, cost)


# -- token bucket ------------------------------------------------------------------------


def test_token_bucket_starts_full_and_drains() -> None:
    run = Run(TokenBucket(rate=10, interval=1.0, burst=5))
    got = [run(100.0) for _ in range(6)]
    assert [d.allowed for d in got] == [True] * 5 + [False]
    assert [d.remaining for d in got] == [4, 3, 2, 1, 0, 0]
    assert all(d.limit == 5 for d in got)
    assert got[0].reset_after == pytest.approx(0.1)  # one token missing, 10 tokens/s
    assert got[4].reset_after == pytest.approx(0.5)
    assert got[4].retry_after == 0.0
    denied = got[5]
    assert denied.retry_after == pytest.approx(0.1)
    assert denied.reset_after == pytest.approx(0.5)
    assert not denied.degraded


def test_token_bucket_refills_at_the_rate() -> None:
    run = Run(TokenBucket(rate=10, interval=1.0, burst=5))
    for _ in range(5):
        assert run(100.0).allowed
    assert not run(100.05).allowed
    assert run(100.1).allowed  # exactly one token back
    assert not run(100.1).allowed
    assert run(100.3).remaining == 1  # two more tokens, one taken


def test_token_bucket_never_holds_more_than_burst() -> None:
    run = Run(TokenBucket(rate=10, interval=1.0, burst=5))
    run(100.0)
    allowed = sum(run(1000.0).allowed for _ in range(20))
    assert allowed == 5


def test_token_bucket_cost() -> None:
    run = Run(TokenBucket(rate=1, interval=2.0, burst=4))
    assert run(10.0, cost=3).remaining == 1
    denied = run(10.0, cost=2)
    assert not denied.allowed and denied.remaining == 1
    assert denied.retry_after == pytest.approx(2.0)  # one token at 0.5/s
    peek = run(10.0, cost=0)
    assert peek.allowed and peek.remaining == 1
    too_big = run(10.0, cost=5)  # can never be allowed: back off for the policy window
    assert not too_big.allowed
    assert too_big.reset_after == pytest.approx(6.0)
    assert too_big.retry_after == pytest.approx(8.0)  # 4 tokens at 0.5/s


def test_token_bucket_with_a_long_interval_does_not_refill_within_a_test() -> None:
    run = Run(TokenBucket(rate=1, interval=86400.0, burst=100))
    allowed = sum(run(1000.0 + i * 0.01).allowed for i in range(300))
    assert allowed == 100


def test_token_bucket_ignores_a_clock_going_back() -> None:
    run = Run(TokenBucket(rate=10, interval=1.0, burst=2))
    run(100.0)
    run(100.0)
    assert not run(99.0).allowed  # no refill from a negative elapsed time
    assert run.state[1] == 100.0  # the stamp stays at the latest time seen
    assert run(100.1).allowed


@pytest.mark.parametrize(
    ("rate", "interval", "burst"),
    [(0, 1.0, 1), (-1, 1.0, 1), (1, 0.0, 1), (1, float("inf"), 1), (1, 1.0, 0)],
)
def test_token_bucket_rejects_bad_parameters(rate: int, interval: float, burst: int) -> None:
    with pytest.raises(ValueError, match="token bucket"):
        TokenBucket(rate, interval, burst)


# -- sliding window ----------------------------------------------------------------------


def test_sliding_window_counts_within_a_window() -> None:
    run = Run(SlidingWindow(requests=10, window=60.0))
    got = [run(600.0) for _ in range(11)]  # window index 10, 0 s into it
    assert [d.allowed for d in got] == [True] * 10 + [False]
    assert [d.remaining for d in got[:10]] == list(range(9, -1, -1))
    denied = got[10]
    assert denied.reset_after == pytest.approx(120.0)  # the count fades out by 720
    # next window: 10 * (1 - f) + 1 <= 10  =>  f = 0.1, i.e. 6 s into it
    assert denied.retry_after == pytest.approx(66.0)


def test_sliding_window_weighs_the_previous_window() -> None:
    run = Run(SlidingWindow(requests=10, window=60.0))
    for _ in range(10):
        run(600.0)
    assert not run(665.9).allowed  # 10 * (1 - 5.9/60) = 9.02 used
    assert run(666.0).allowed  # 9.0 used
    assert not run(666.0).allowed
    half = run(690.0)  # 10 * 0.5 + 1 = 6 used
    assert half.allowed and half.remaining == 3
    assert run(690.0).allowed and run(690.0).allowed
    assert run(690.0).allowed and not run(690.0).allowed


def test_sliding_window_retry_inside_the_window() -> None:
    run = Run(SlidingWindow(requests=10, window=60.0))
    for _ in range(10):
        run(600.0)
    denied = run(660.0)  # previous = 10 at full weight, current = 0
    assert not denied.allowed
    assert denied.retry_after == pytest.approx(6.0)
    assert denied.reset_after == pytest.approx(60.0)
    assert not run(665.0).allowed
    assert run(660.0 + denied.retry_after).allowed


def test_sliding_window_forgets_after_two_windows() -> None:
    run = Run(SlidingWindow(requests=3, window=10.0))
    for _ in range(3):
        run(100.0)
    fresh = run(125.0)
    assert fresh.allowed and fresh.remaining == 2
    assert run.state == [12.0, 1.0, 0.0]


def test_sliding_window_cost_above_the_limit() -> None:
    run = Run(SlidingWindow(requests=3, window=10.0))
    run(100.0)
    denied = run(100.0, cost=4)
    assert not denied.allowed
    assert denied.reset_after == pytest.approx(20.0)
    assert denied.retry_after == pytest.approx(10.0)


@pytest.mark.parametrize(("requests", "window"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_sliding_window_rejects_bad_parameters(requests: int, window: float) -> None:
    with pytest.raises(ValueError, match="sliding window"):
        SlidingWindow(requests, window)


# -- invariants --------------------------------------------------------------------------

steps = st.lists(
    st.tuples(st.floats(0.0, 2.0, allow_nan=False), st.integers(0, 4)), min_size=1, max_size=80
)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.integers(1, 20),
    interval=st.sampled_from([0.5, 1.0, 3.0]),
    burst=st.integers(1, 10),
    calls=steps,
)
def test_token_bucket_invariants(
    rate: int, interval: float, burst: int, calls: list[tuple[float, int]]
) -> None:
    algorithm = TokenBucket(rate, interval, burst)
    run = Run(algorithm)
    now = 1000.0
    granted: list[tuple[float, int]] = []
    for gap, cost in calls:
        now += gap
        d = run(now, cost)
        assert d.allowed == (d.retry_after == 0.0)
        assert 0 <= (d.remaining or 0) <= burst
        if d.allowed:
            granted.append((now, cost))
        elif cost <= burst:
            probe = Run(algorithm)
            probe.state = list(run.state)
            assert probe(now + d.retry_after + 1e-9, cost).allowed
    for i, (start, _) in enumerate(granted):
        total = 0
        for at, cost in granted[i:]:
            total += cost
            assert total <= burst + algorithm.per_second * (at - start) + 1e-6


@settings(max_examples=300, deadline=None)
@given(
    requests=st.integers(1, 10),
    window=st.sampled_from([1.0, 2.5, 10.0]),
    calls=steps,
)
def test_sliding_window_invariants(
    requests: int, window: float, calls: list[tuple[float, int]]
) -> None:
    algorithm = SlidingWindow(requests, window)
    run = Run(algorithm)
    now = 1000.0
    per_window: dict[int, int] = {}
    for gap, cost in calls:
        now += gap
        d = run(now, cost)
        assert d.allowed == (d.retry_after == 0.0)
        assert 0 <= (d.remaining or 0) <= requests
        if d.allowed:
            index = int(run.state[0])
            per_window[index] = per_window.get(index, 0) + cost
            assert per_window[index] <= requests
        elif cost <= requests:
            probe = Run(algorithm)
            probe.state = list(run.state)
            assert probe(now + d.retry_after + 1e-9, cost).allowed
