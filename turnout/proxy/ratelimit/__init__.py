"""Rate limiting: token bucket and sliding window, host-wide local or global in Redis.

- ``algorithms``: the sans-IO math (explicit ``now``) and ``Decision``.
- ``rules``: ``RateLimitRule``, what a request is keyed by (``KeySpec``, ``extract_key``).
- ``local``: ``LocalStore``, the host-wide table every worker maps (``fcntl``-locked).
- ``redis_store``: ``RedisStore``, global counters via atomic Lua scripts, with a timeout
  and a ``breaker.Breaker``.
- ``headers``: ``RateLimit-*``/``Retry-After`` fields and the 429/503 JSON refusals.
- ``limiter``: ``RateLimiter``, the facade the request path calls.
"""

from turnout.proxy.ratelimit.algorithms import Decision, SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.breaker import Breaker
from turnout.proxy.ratelimit.headers import Rejection
from turnout.proxy.ratelimit.limiter import RateLimiter, tightest
from turnout.proxy.ratelimit.local import LocalStore
from turnout.proxy.ratelimit.redis_store import RedisStore
from turnout.proxy.ratelimit.rules import KeyBy, KeySpec, RateLimitRule, extract_key

__all__ = [
    "Breaker",
    "Decision",
    "KeyBy",
    "KeySpec",
    "LocalStore",
    "RateLimitRule",
    "RateLimiter",
    "RedisStore",
    "Rejection",
    "SlidingWindow",
    "TokenBucket",
    "extract_key",
    "tightest",
]
