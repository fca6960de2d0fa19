"""The facade with local rules: synchronous decisions, keys, headers, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.proxy.ratelimit import limiter as limiter_module
from turnout.proxy.ratelimit.algorithms import Decision, SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.limiter import RateLimiter, tightest
from turnout.proxy.ratelimit.local import LocalStore
from turnout.proxy.ratelimit.rules import RateLimitRule


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


RULES = [
    RateLimitRule("per-ip", TokenBucket(rate=1, interval=1.0, burst=2)),
    RateLimitRule("per-route", SlidingWindow(requests=3, window=60.0)),
]


def decide(limiter: RateLimiter, key: bytes, rule: int, cost: int = 1) -> Decision:
    result = limiter.decide(key, rule, cost)
    assert type(result) is Decision  # local rules answer synchronously
    return result


def test_local_rules_decide_synchronously_per_key_and_rule() -> None:
    clock = Clock()
    limiter = RateLimiter(RULES, clock=clock)
    try:
        assert not limiter.is_global(0)
        assert [decide(limiter, b"a", 0).allowed for _ in range(3)] == [True, True, False]
        assert decide(limiter, b"b", 0).allowed  # another key
        assert [decide(limiter, b"a", 1).allowed for _ in range(4)] == [True] * 3 + [False]
        clock.now += 1.0
        assert decide(limiter, b"a", 0).allowed  # refilled one token
    finally:
        limiter.close()


def test_counters_are_keyed_by_rule_name_not_position(tmp_path: Path) -> None:
    with LocalStore.create(tmp_path / "t", slots=64) as store:
        clock = Clock()
        first = RateLimiter(RULES, local=store, clock=clock)
        for _ in range(2):
            decide(first, b"a", 0)
        reordered = RateLimiter(list(reversed(RULES)), local=store, clock=clock)
        assert not decide(reordered, b"a", 1).allowed  # same counter as before
        first.close()  # does not close a store it was given
        assert decide(reordered, b"a", 0).allowed


def test_headers_and_refusal() -> None:
    clock = Clock()
    clock.now = 1020.0  # the start of a 60 s window
    limiter = RateLimiter(RULES, clock=clock)
    try:
        ok = decide(limiter, b"a", 1)
        assert limiter.headers(1, ok) == [
            (b"ratelimit-limit", b"3"),
            (b"ratelimit-remaining", b"2"),
            (b"ratelimit-reset", b"120"),
            (b"ratelimit-policy", b"3;w=60"),
        ]
        for _ in range(2):
            decide(limiter, b"a", 1)
        denied = decide(limiter, b"a", 1)
        refusal = limiter.rejection(1, denied)
        assert refusal.status == 429
        assert (b"retry-after", b"80") in refusal.headers  # 3 * (1 - f) + 1 <= 3 at f=1/3
    finally:
        limiter.close()


def test_the_hash_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limiter_module, "HASH_CACHE_SIZE", 4)
    limiter = RateLimiter(RULES[:1], clock=Clock())
    try:
        for i in range(10):
            decide(limiter, b"k%d" % i, 0)
        assert len(limiter._entries[0].cache) <= 4
        assert decide(limiter, b"k0", 0).remaining == 0  # rehashed to the same counter
    finally:
        limiter.close()


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="unique"):
        RateLimiter([RULES[0], RULES[0]])
    glob = RateLimitRule("g", SlidingWindow(1, 1.0), scope="global")
    with pytest.raises(ValueError, match="no Redis"):
        RateLimiter([glob])


def test_tightest() -> None:
    a = Decision(True, 10, 5, 1.0, 0.0)
    b = Decision(True, 10, 2, 1.0, 0.0)
    c = Decision(True, 10, None, 0.0, 0.0, degraded=True)
    no = Decision(False, 10, 0, 1.0, 1.0)
    assert tightest([]) is None
    assert tightest([a, b, c]) is b
    assert tightest([c, a]) is a
    assert tightest([a, no, b]) is no
