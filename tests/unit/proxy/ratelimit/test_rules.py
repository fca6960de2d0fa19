"""Rule validation and key extraction (client IP, header, route, consumer, JWT claim)."""

from __future__ import annotations

import pytest

from turnout.proxy.ratelimit.algorithms import SlidingWindow
from turnout.proxy.ratelimit.rules import KeyBy, KeySpec, RateLimitRule, extract_key

HEADERS = {b"x-api-key": b"k1", b"x-tenant": b"acme"}


def key(spec: KeySpec, **kw: object) -> bytes | None:
    args: dict[str, object] = {"client_ip": b"10.0.0.1", "headers": HEADERS, "route": b"r1"}
    args.update(kw)
    return extract_key(spec, **args)  # type: ignore[arg-type]


def test_keys() -> None:
    assert key(KeySpec()) == b"10.0.0.1"
    assert key(KeySpec(KeyBy.HEADER, "X-API-Key")) == b"k1"
    assert key(KeySpec(KeyBy.HEADER, "x-missing")) is None
    assert key(KeySpec(KeyBy.ROUTE)) == b"r1"
    assert key(KeySpec(KeyBy.CONSUMER)) is None
    assert key(KeySpec(KeyBy.CONSUMER), consumer=b"alice") == b"alice"


def test_jwt_claim_keys() -> None:
    spec = KeySpec(KeyBy.JWT_CLAIM, "sub")
    assert key(spec) is None
    assert key(spec, claims={"sub": "user-1"}) == b"user-1"
    assert key(spec, claims={"sub": 42}) == b"42"
    assert key(spec, claims={"sub": ["a"]}) is None
    assert key(spec, claims={"iss": "x"}) is None


def test_named_keys_need_a_name() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        KeySpec(KeyBy.HEADER)
    with pytest.raises(ValueError, match="needs a name"):
        KeySpec(KeyBy.JWT_CLAIM)


def test_rule_validation() -> None:
    algorithm = SlidingWindow(1, 1.0)
    with pytest.raises(ValueError, match="name"):
        RateLimitRule("", algorithm)
    with pytest.raises(ValueError, match="scope"):
        RateLimitRule("r", algorithm, scope="cluster")
    with pytest.raises(ValueError, match="failure mode"):
        RateLimitRule("r", algorithm, failure_mode="maybe")
