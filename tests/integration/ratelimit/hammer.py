"""A stand-in worker for the exactness tests: one process hammering a rate limiter.

Run as ``python -m tests.integration.ratelimit.hammer MODE TARGET ALGORITHM CALLS KEYS``:

- ``MODE`` ``local`` opens the shared table at ``TARGET`` (``LocalStore.open``, as a
  worker would); ``private`` uses a table of its own (the control that must overcount);
  ``global`` connects its own ``RedisStore`` to the URL ``TARGET``.
- ``ALGORITHM`` ``bucket:<burst>`` (a token bucket refilling 1 token a day) or
  ``window:<requests>`` (a sliding window of 10**6 s).
- ``CALLS`` decisions in total, round-robin over ``KEYS`` keys (``k0``, ``k1``, ...);
  global mode keeps 32 calls in flight.

It prints ``ready`` once set up, waits for a line on stdin (so all processes start
together), hammers, and prints one JSON line: ``{"allowed": {key: n}, "degraded": n}``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from turnout.proxy.ratelimit.algorithms import Algorithm, Decision, SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.limiter import RateLimiter
from turnout.proxy.ratelimit.local import LocalStore
from turnout.proxy.ratelimit.redis_store import RedisStore
from turnout.proxy.ratelimit.rules import RateLimitRule


def algorithm(spec: str) -> Algorithm:
    kind, _, n = spec.partition(":")
    if kind == "bucket":
        return TokenBucket(rate=1, interval=86400.0, burst=int(n))
    return SlidingWindow(requests=int(n), window=1e6)


def report(allowed: dict[str, int], degraded: int) -> None:
    print(json.dumps({"allowed": allowed, "degraded": degraded}), flush=True)


def run_local(mode: str, target: str, rule: RateLimitRule, calls: int, keys: list[bytes]) -> None:
    store = LocalStore.open(target) if mode == "local" else LocalStore.private(1024)
    limiter = RateLimiter([rule], local=store)
    print("ready", flush=True)
    sys.stdin.readline()
    allowed = dict.fromkeys(keys, 0)
    n = len(keys)
    for i in range(calls):
        key = keys[i % n]
        d = limiter.decide(key, 0)
        assert type(d) is Decision
        if d.allowed:
            allowed[key] += 1
    store.close()
    report({k.decode(): v for k, v in allowed.items()}, 0)


async def run_global(target: str, rule: RateLimitRule, calls: int, keys: list[bytes]) -> None:
    store = RedisStore(target, timeout=1.0)  # exactness, not latency, is tested here
    limiter = RateLimiter([rule], redis=store)
    await store.load()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    allowed = dict.fromkeys(keys, 0)
    degraded = 0
    counter = iter(range(calls))
    n = len(keys)

    async def lane() -> None:
        nonlocal degraded
        for i in counter:
            key = keys[i % n]
            result = limiter.decide(key, 0)
            assert not isinstance(result, Decision)
            d = await result
            degraded += d.degraded
            if d.allowed and not d.degraded:
                allowed[key] += 1

    await asyncio.gather(*(lane() for _ in range(32)))
    await store.aclose()
    report({k.decode(): v for k, v in allowed.items()}, degraded)


def main() -> None:
    mode, target, spec, calls, nkeys = sys.argv[1:6]
    keys = [b"k%d" % i for i in range(int(nkeys))]
    scope = "global" if mode == "global" else "local"
    rule = RateLimitRule("hammer", algorithm(spec), scope=scope)
    if mode == "global":
        asyncio.run(run_global(target, rule, int(calls), keys))
    else:
        run_local(mode, target, rule, int(calls), keys)


if __name__ == "__main__":
    main()
