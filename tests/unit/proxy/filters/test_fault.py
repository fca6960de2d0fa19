"""FaultInjector: percentages (statistically, seeded), header condition, no-fault path."""

from __future__ import annotations

import math
import random

import pytest

from turnout.proxy.filters.fault import NO_FAULT, FaultInjector
from turnout.proxy.protocols.heads import Headers, RequestHead

N = 100_000
# Two-sided bound for a binomial count: |hits - N p| <= Z sqrt(N p (1 - p)); with Z = 4.5
# a correct implementation fails with probability ~7e-6 per check (and the seed is fixed).
Z = 4.5
# Chi-square critical value, 3 degrees of freedom, p = 0.001.
CHI2_3DF_P001 = 16.266


def _head(headers: Headers | None = None) -> RequestHead:
    return RequestHead(b"GET", b"/", b"", headers or [], authority=b"example.test")


def _within_binomial(hits: int, n: int, p: float) -> bool:
    sd = math.sqrt(n * p * (1.0 - p))
    return abs(hits - n * p) <= Z * sd + 1e-9


@pytest.mark.parametrize("percent", [0.5, 10.0, 33.3, 50.0, 90.0])
def test_delay_percentage_is_honoured(percent: float) -> None:
    fi = FaultInjector(0.25, percent, 0, 0.0)
    rng = random.Random(1)
    head = _head()
    hits = 0
    for _ in range(N):
        delay, status = fi.decide(head, rng.random(), rng.random())
        assert status == 0
        if delay:
            assert delay == 0.25
            hits += 1
    assert _within_binomial(hits, N, percent / 100.0), hits


@pytest.mark.parametrize("percent", [0.1, 5.0, 25.0, 75.0])
def test_abort_percentage_is_honoured(percent: float) -> None:
    fi = FaultInjector(0.0, 0.0, 503, percent)
    rng = random.Random(2)
    head = _head()
    hits = 0
    for _ in range(N):
        delay, status = fi.decide(head, rng.random(), rng.random())
        assert delay == 0.0
        if status:
            assert status == 503
            hits += 1
    assert _within_binomial(hits, N, percent / 100.0), hits


def test_delay_and_abort_are_rolled_independently() -> None:
    """Chi-square over the four outcomes with delay 30 % and abort 20 %."""
    fi = FaultInjector(1.5, 30.0, 429, 20.0)
    rng = random.Random(3)
    head = _head()
    counts = {(0.0, 0): 0, (1.5, 0): 0, (0.0, 429): 0, (1.5, 429): 0}
    for _ in range(N):
        counts[fi.decide(head, rng.random(), rng.random())] += 1
    expected = {
        (0.0, 0): 0.7 * 0.8,
        (1.5, 0): 0.3 * 0.8,
        (0.0, 429): 0.7 * 0.2,
        (1.5, 429): 0.3 * 0.2,
    }
    chi2 = sum((counts[k] - N * p) ** 2 / (N * p) for k, p in expected.items())
    assert chi2 < CHI2_3DF_P001, (chi2, counts)


def test_extremes_zero_and_hundred_percent() -> None:
    head = _head()
    always = FaultInjector(2.0, 100.0, 500, 100.0)
    never = FaultInjector(2.0, 0.0, 500, 0.0)
    for r in (0.0, 0.5, 0.999999999):
        assert always.decide(head, r, r) == (2.0, 500)
        assert never.decide(head, r, r) == NO_FAULT
    assert always.active
    assert not never.active


def test_decide_uses_the_rolls_as_thresholds() -> None:
    fi = FaultInjector(0.1, 10.0, 503, 50.0)
    head = _head()
    assert fi.decide(head, 0.0999, 0.9) == (0.1, 0)
    assert fi.decide(head, 0.1, 0.9) == NO_FAULT
    assert fi.decide(head, 0.5, 0.4999) == (0.0, 503)
    assert fi.decide(head, 0.05, 0.25) == (0.1, 503)


def test_no_fault_and_fault_answers() -> None:
    """Interpreted, these are shared tuples; compiled (mypyc), unboxed (float, int) pairs
    between native callers and fresh tuples for Python callers: compare by value."""
    fi = FaultInjector(0.1, 50.0, 503, 50.0, ((b"x-chaos", b"on"),))
    hit = _head([(b"x-chaos", b"on")])
    miss = _head()
    assert fi.decide(miss, 0.0, 0.0) == NO_FAULT  # header condition fails
    assert fi.decide(hit, 0.9, 0.9) == NO_FAULT  # dice miss
    assert fi.decide(hit, 0.0, 0.0) == (0.1, 503)
    assert fi.decide(hit, 0.0, 0.9) == (0.1, 0)
    assert fi.decide(hit, 0.9, 0.0) == (0.0, 503)


def test_disabled_parts_never_fire() -> None:
    head = _head()
    no_delay = FaultInjector(0.0, 100.0, 0, 100.0)  # zero delay, no abort status
    assert not no_delay.active
    assert no_delay.decide(head, 0.0, 0.0) == NO_FAULT
    abort_only = FaultInjector(0.0, 100.0, 418, 100.0)
    assert abort_only.decide(head, 0.0, 0.0) == (0.0, 418)


def test_header_condition_requires_every_pair() -> None:
    fi = FaultInjector(0.0, 0.0, 503, 100.0, ((b"x-chaos", b"on"), (b"x-team", b"payments")))
    both = _head([(b"x-chaos", b"on"), (b"x-team", b"payments"), (b"accept", b"*/*")])
    assert fi.decide(both, 0.5, 0.5) == (0.0, 503)
    only_one = _head([(b"x-chaos", b"on")])
    assert fi.decide(only_one, 0.5, 0.5) == NO_FAULT
    wrong_value = _head([(b"x-chaos", b"ON"), (b"x-team", b"payments")])
    assert fi.decide(wrong_value, 0.5, 0.5) == NO_FAULT  # values are compared exactly
    assert fi.decide(_head(), 0.5, 0.5) == NO_FAULT


def test_header_condition_sees_repeated_headers_joined() -> None:
    """Matching is against ``head.get(name)``: repeated headers are joined by ","."""
    fi = FaultInjector(0.0, 0.0, 503, 100.0, ((b"x-chaos", b"a,b"),))
    assert fi.decide(_head([(b"x-chaos", b"a"), (b"x-chaos", b"b")]), 0.0, 0.0) == (0.0, 503)
    assert fi.decide(_head([(b"x-chaos", b"a")]), 0.0, 0.0) == NO_FAULT


def test_header_condition_applies_to_the_statistics() -> None:
    fi = FaultInjector(0.0, 0.0, 503, 40.0, ((b"x-chaos", b"on"),))
    rng = random.Random(4)
    eligible = _head([(b"x-chaos", b"on")])
    other = _head([(b"x-other", b"on")])
    hits = 0
    for _ in range(N):
        if fi.decide(eligible, rng.random(), rng.random())[1]:
            hits += 1
        assert fi.decide(other, rng.random(), rng.random()) == NO_FAULT
    assert _within_binomial(hits, N, 0.4), hits


@pytest.mark.parametrize(
    ("delay", "delay_percent", "status", "abort_percent", "headers"),
    [
        (-1.0, 10.0, 0, 0.0, ()),
        (float("nan"), 10.0, 0, 0.0, ()),
        (1.0, 100.5, 0, 0.0, ()),
        (1.0, -0.1, 0, 0.0, ()),
        (0.0, 0.0, 503, 101.0, ()),
        (0.0, 0.0, 199, 50.0, ()),
        (0.0, 0.0, 600, 50.0, ()),
        (0.0, 0.0, 503, 50.0, ((b"X-Chaos", b"on"),)),
    ],
)
def test_invalid_values_are_refused(
    delay: float,
    delay_percent: float,
    status: int,
    abort_percent: float,
    headers: tuple[tuple[bytes, bytes], ...],
) -> None:
    with pytest.raises(ValueError):
        FaultInjector(delay, delay_percent, status, abort_percent, headers)
