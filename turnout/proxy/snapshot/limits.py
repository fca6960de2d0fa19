"""Rate limits of a snapshot: TrafficPolicy ``rateLimit`` specs compiled into one limiter.

Every rule of every policy in force goes into a single ``RateLimiter`` per snapshot;
each ``RouteAction`` keeps the indices of its own rules. Rules are named
``policy#index`` so their counters survive reloads that keep the policy.
"""

from __future__ import annotations

from typing import Final

from turnout.config.model.traffic import RateLimitSpec
from turnout.core.durations import parse_duration
from turnout.proxy.ratelimit.algorithms import SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.limiter import RateLimiter
from turnout.proxy.ratelimit.local import LocalStore
from turnout.proxy.ratelimit.redis_store import RedisStore
from turnout.proxy.ratelimit.rules import KeyBy, KeySpec, RateLimitRule
from turnout.proxy.snapshot.tables import RouteAction


class LimitStores:
    """Where rate-limit counters live: the worker's view of the host-wide table and its
    Redis client (None in tests and trial builds: a private table / no global rules)."""

    __slots__ = ("local", "redis")

    def __init__(self, local: LocalStore | None, redis: RedisStore | None) -> None:
        self.local = local
        self.redis = redis


_UNIT_SECONDS: Final = {"Second": 1.0, "Minute": 60.0, "Hour": 3600.0, "Day": 86400.0}
_KEY_BY: Final = {
    "ClientIP": KeyBy.CLIENT_IP,
    "Header": KeyBy.HEADER,
    "Route": KeyBy.ROUTE,
    "Consumer": KeyBy.CONSUMER,
    "JWTClaim": KeyBy.JWT_CLAIM,
}


def compile_rate_limits(spec: RateLimitSpec, policy: str) -> list[RateLimitRule]:
    """A TrafficPolicy ``rateLimit`` as limiter rules named ``policy#index`` (the names
    key the counters, so they survive reloads that keep the policy)."""
    rules = []
    for i, rule in enumerate(spec.rules):
        period = _UNIT_SECONDS[rule.limit.unit]
        requests = rule.limit.requests
        algorithm: TokenBucket | SlidingWindow
        if rule.algorithm == "TokenBucket":
            algorithm = TokenBucket(requests, period, rule.burst or requests)
        else:
            algorithm = SlidingWindow(requests, period)
        rules.append(
            RateLimitRule(
                f"{policy}#{i}",
                algorithm,
                KeySpec(_KEY_BY[rule.key.type], rule.key.name or ""),
                scope=spec.type.lower(),
                failure_mode=spec.failure_mode.lower(),
                timeout=parse_duration(spec.timeout),
            )
        )
    return rules


def compile_limiter(limited: list[RouteAction], stores: LimitStores) -> None:
    """One limiter for the snapshot, over every policy's rules; each action keeps the
    indices of its own. Raises (failing the build) for global rules without Redis."""
    rules: list[RateLimitRule] = []
    first: dict[str, int] = {}
    for action in limited:
        assert action.rate_limit is not None
        name = action.rate_limit_name
        if name not in first:
            first[name] = len(rules)
            rules.extend(compile_rate_limits(action.rate_limit, name))
    if stores.redis is None and any(r.scope == "global" for r in rules):
        raise ValueError(
            "a TrafficPolicy has Global rate limits but Turnout runs without Redis "
            "(start it with --redis redis://HOST:PORT)"
        )
    limiter = RateLimiter(rules, local=stores.local, redis=stores.redis)
    for action in limited:
        assert action.rate_limit is not None
        base = first[action.rate_limit_name]
        n = len(action.rate_limit.rules)
        flt = action.rate_limit_filter
        assert flt is not None
        flt.limiter = limiter
        flt.limits = tuple((base + i, rules[base + i].key) for i in range(n))
