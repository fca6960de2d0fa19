"""``RateLimit-*``/``Retry-After`` rendering, the 429 and 503 refusals and their JSON."""

from __future__ import annotations

import json

from turnout.proxy.ratelimit.algorithms import Decision, SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.headers import policy, rate_limit_headers, rejection, seconds


def test_policy_values() -> None:
    assert policy(SlidingWindow(100, 60.0)) == b"100;w=60"
    assert policy(SlidingWindow(5, 0.5)) == b"5;w=1"
    assert policy(TokenBucket(10, 1.0, 20)) == b"10;w=1;burst=20"
    assert policy(TokenBucket(100, 60.0, 10)) == b"100;w=60;burst=10"
    assert policy(TokenBucket(5, 0.5, 10)) == b"10;w=1;burst=10"  # said per whole second


def test_seconds_round_up() -> None:
    assert seconds(0.0) == 0
    assert seconds(-1.0) == 0
    assert seconds(0.001) == 1
    assert seconds(1.0) == 1
    assert seconds(1.2) == 2
    assert seconds(1e12) == 2147483647


def test_headers_of_an_allowed_request() -> None:
    d = Decision(True, 10, 7, 2.2, 0.0)
    assert rate_limit_headers(d, b"10;w=60") == [
        (b"ratelimit-limit", b"10"),
        (b"ratelimit-remaining", b"7"),
        (b"ratelimit-reset", b"3"),
        (b"ratelimit-policy", b"10;w=60"),
    ]


def test_failed_open_sends_no_remaining() -> None:
    d = Decision(True, 10, None, 0.0, 0.0, degraded=True)
    assert rate_limit_headers(d, b"10;w=60") == [
        (b"ratelimit-limit", b"10"),
        (b"ratelimit-policy", b"10;w=60"),
    ]


def test_429_with_retry_after_and_json() -> None:
    d = Decision(False, 10, 0, 59.5, 5.2)
    r = rejection(d, b"10;w=60")
    assert r.status == 429
    assert r.code == b"rate_limited"
    assert (b"retry-after", b"6") in r.headers
    assert (b"ratelimit-remaining", b"0") in r.headers
    assert (b"ratelimit-reset", b"60") in r.headers
    body = json.loads(r.body)
    assert body == {"error": "rate_limited", "message": r.message.decode(), "retry_after": 6}


def test_retry_after_is_at_least_one_second() -> None:
    r = rejection(Decision(False, 10, 0, 0.01, 0.01), b"10;w=60")
    assert (b"retry-after", b"1") in r.headers


def test_503_when_the_store_failed_closed() -> None:
    d = Decision(False, 10, None, 0.0, 0.4, degraded=True)
    r = rejection(d, b"10;w=60")
    assert r.status == 503
    assert r.code == b"rate_limit_unavailable"
    assert r.headers == [(b"retry-after", b"1")]
    assert json.loads(r.body)["error"] == "rate_limit_unavailable"
