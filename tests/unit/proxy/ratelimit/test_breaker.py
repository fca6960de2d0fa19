"""The consecutive-failure breaker: opening, the single half-open probe, recovery."""

from __future__ import annotations

import pytest

from turnout.proxy.ratelimit.breaker import CLOSED, HALF_OPEN, OPEN, Breaker


def test_opens_after_threshold_consecutive_failures() -> None:
    b = Breaker(threshold=5, cooldown=1.0)
    for i in range(4):
        assert b.allow(10.0)
        b.failure(10.0 + i)
    assert b.state == CLOSED
    b.failure(14.0)
    assert b.state == OPEN and b.state_name == "open" and b.opens == 1
    assert not b.allow(14.5)
    assert b.retry_in(14.5) == pytest.approx(0.5)


def test_a_success_resets_the_count() -> None:
    b = Breaker(threshold=3, cooldown=1.0)
    b.failure(1.0)
    b.failure(1.0)
    b.success()
    b.failure(1.0)
    b.failure(1.0)
    assert b.state == CLOSED


def test_half_open_lets_exactly_one_probe_through() -> None:
    b = Breaker(threshold=1, cooldown=1.0)
    b.failure(0.0)
    assert not b.allow(0.99)
    assert b.allow(1.0)  # the probe
    assert b.state == HALF_OPEN
    assert not b.allow(1.0) and not b.allow(1.5)  # everyone else waits for its answer
    assert b.retry_in(1.5) == 0.0
    b.success()
    assert b.state == CLOSED and b.allow(1.6)


def test_a_failed_probe_opens_again_for_a_full_cooldown() -> None:
    b = Breaker(threshold=5, cooldown=1.0)
    for _ in range(5):
        b.failure(0.0)
    assert b.allow(1.0)
    b.failure(1.05)  # one failure is enough in half-open
    assert b.state == OPEN and b.opens == 2
    assert not b.allow(2.0)
    assert b.allow(2.1)


def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    b = Breaker(threshold=1, cooldown=1.0)
    b.failure(0.0)
    assert b.allow(1.0)
    b.abandoned(1.01)
    assert b.state == OPEN
    assert b.allow(1.02)


def test_abandoning_outside_half_open_changes_nothing() -> None:
    b = Breaker()
    b.abandoned(5.0)
    assert b.state == CLOSED


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Breaker(threshold=0)
    with pytest.raises(ValueError):
        Breaker(cooldown=-1.0)


def test_late_timeouts_of_one_stall_count_once() -> None:
    # 8 calls started between t=0.00 and t=0.02; the worker's loop stalls and all their
    # 50 ms timeouts fire late, together, at t=0.09: one stall, one failure.
    b = Breaker(threshold=5, cooldown=1.0)
    for i in range(8):
        b.failure(0.09, since=i * 0.0025)
    assert b.state == CLOSED and b.failures == 1
    # A later stall counts again; five separate stalls in a row do open it.
    for n in range(1, 5):
        for i in range(8):
            b.failure(0.09 + n, since=n + i * 0.0025)
    assert b.state == OPEN and b.opens == 1


def test_on_time_timeouts_each_count() -> None:
    # A frozen store: the same 8 concurrent calls time out on time: 8 failures, open.
    b = Breaker(threshold=5, cooldown=1.0)
    for _ in range(8):
        b.failure(0.05)
    assert b.state == OPEN and b.opens == 1


def test_a_late_probe_timeout_reopens() -> None:
    b = Breaker(threshold=1, cooldown=1.0)
    b.failure(0.0)
    assert b.allow(1.0)
    b.failure(1.08, since=1.0)  # the probe started after the failure that opened it
    assert b.state == OPEN and b.retry_in(1.08) == pytest.approx(1.0)


def test_a_stall_after_recovery_does_not_reopen() -> None:
    # The hole ends, the probe succeeds; a stall of the worker's own loop then times
    # out every call in flight: before the fix that was 8 failures and a re-open.
    b = Breaker(threshold=5, cooldown=1.0)
    for i in range(5):
        b.failure(float(i) * 0.01)
    assert b.allow(1.05)
    b.success()
    for i in range(8):
        b.failure(4.07, since=4.0 + i * 0.001)
    assert b.state == CLOSED and b.opens == 1
