"""The error-rate breaker's state machine, the concurrency guard, and retry policies."""

from __future__ import annotations

import random

from turnout.config.model.backend import RetrySpec
from turnout.config.model.routes import HTTPRouteRetry
from turnout.proxy.upstream.breaker import (
    BREAKER_OPEN,
    CLOSED,
    HALF_OPEN,
    MAX_REQUESTS,
    OPEN,
    BackendGuard,
    ErrorRateBreaker,
)
from turnout.proxy.upstream.retry import RetryPolicy, backend_policy, route_policy


def breaker(**kw: float) -> tuple[ErrorRateBreaker, list[int]]:
    seen: list[int] = []
    settings = {
        "threshold": 50,
        "minimum_requests": 4,
        "window": 10.0,
        "open_duration": 5.0,
        "half_open_requests": 2,
        **kw,
    }
    b = ErrorRateBreaker(
        int(settings["threshold"]),
        int(settings["minimum_requests"]),
        settings["window"],
        settings["open_duration"],
        int(settings["half_open_requests"]),
        on_transition=seen.append,
    )
    return b, seen


def test_opens_at_the_threshold_once_the_minimum_is_reached() -> None:
    b, seen = breaker()
    for ok in (False, False, False):  # 3 errors: below the minimum of 4
        b.record(ok, 100.0)
    assert b.state == CLOSED
    b.record(True, 100.5)  # 3 of 4 failed: 75 % >= 50 %: not yet, a success
    assert b.state == CLOSED
    b.record(False, 101.0)  # 4 of 5 failed
    assert b.state == OPEN and seen == [OPEN]
    assert not b.allow(103.0)


def test_half_open_closes_after_enough_successes_and_reopens_on_a_failure() -> None:
    b, seen = breaker()
    for _ in range(4):
        b.record(False, 0.0)
    assert b.state == OPEN
    assert b.allow(5.0) and b.state == HALF_OPEN
    assert b.allow(5.0)
    assert not b.allow(5.0)  # only two probes
    b.record(True, 5.1)
    assert b.state == HALF_OPEN
    b.record(True, 5.2)
    assert b.state == CLOSED
    assert seen == [OPEN, HALF_OPEN, CLOSED]
    for _ in range(4):
        b.record(False, 6.0)
    assert b.allow(11.0) and b.state == HALF_OPEN
    b.record(False, 11.1)
    assert b.state == OPEN and b.open_until == 16.1


def test_old_outcomes_leave_the_window() -> None:
    b, _ = breaker(minimum_requests=4, window=10.0)
    for t in (0.0, 1.0, 2.0):
        b.record(False, t)
    b.record(False, 20.0)  # the first three are 20 s old: only one error in the window
    assert b.state == CLOSED


def test_guard_limits_and_breaker() -> None:
    g = BackendGuard()
    g.max_requests = 2
    g.active = 2
    assert g.admit(0.0) == MAX_REQUESTS
    g.active = 1
    assert g.admit(0.0) == b""
    b, _ = breaker(minimum_requests=1, threshold=1)
    g.breaker = b
    g.record(False, 0.0)
    assert g.admit(1.0) == BREAKER_OPEN


def test_backoff_is_exponential_jittered_and_capped() -> None:
    p = RetryPolicy(5, backoff_base=0.025, backoff_max=0.25)
    rand = random.Random(7)
    for attempt, ceiling in ((1, 0.025), (2, 0.05), (3, 0.1), (4, 0.2), (5, 0.25), (9, 0.25)):
        for _ in range(50):
            wait = p.backoff(attempt, rand.random())
            assert ceiling / 2 <= wait <= ceiling
    floor = RetryPolicy(3, backoff_base=0.1, backoff_max=1.0, backoff_floor=0.1)
    assert floor.backoff(1, 0.0) == 0.1


def test_status_triggers_and_budget() -> None:
    p = RetryPolicy(2, on_gateway=True, codes=frozenset({409}))
    assert [p.retry_status(s) for s in (500, 502, 503, 504, 409, 404)] == [
        False,
        True,
        True,
        True,
        True,
        False,
    ]
    assert RetryPolicy(1, on_5xx=True).retry_status(500)
    assert p.budget(active=100) == 20 and p.budget(active=1) == 3


def test_policies_from_config() -> None:
    spec = RetrySpec.model_validate(
        {
            "numRetries": 3,
            "retryOn": {"triggers": ["5xx", "retriable-status-codes"], "httpStatusCodes": [409]},
            "perRetry": {"timeout": "250ms", "backOff": {"baseInterval": "10ms"}},
        }
    )
    p = backend_policy(spec)
    assert (p.retries, p.on_5xx, p.on_connect, p.codes) == (3, True, False, frozenset({409}))
    assert (p.per_try_timeout, p.backoff_base, p.backoff_max) == (0.25, 0.01, 0.1)
    # A Gateway API rule: its codes, its attempts, connection errors always, backoff as floor.
    rule = HTTPRouteRetry.model_validate({"codes": [500], "attempts": 3, "backoff": "100ms"})
    r = route_policy(rule, p)
    assert (r.retries, r.codes, r.on_connect, r.on_reset, r.on_5xx) == (
        3,
        frozenset({500}),
        True,
        True,
        False,
    )
    assert r.backoff(1, 0.0) == 0.1 and r.per_try_timeout == 0.25
