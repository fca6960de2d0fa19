"""Redis black-holed (reachable, silent) under load, then back: a private
``redis-server`` behind a ``BlackHoleRelay`` that keeps accepting and reading but
forwards nothing. Every decision returns within the call timeout plus a small slack,
fail-open rules allow and fail-closed rules refuse, the breaker opens, and decisions
should be exact again within about one breaker cooldown after the partition ends — the
last part does not hold yet (marked xfail; see docs/reliability.md)."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time

import pytest

from tests.integration.ratelimit.conftest import RedisServer
from tests.integration.ratelimit.test_redis_store import TIMEOUT, Load, Sample, rule
from turnout.proxy.ratelimit.algorithms import Decision, SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.breaker import Breaker
from turnout.proxy.ratelimit.limiter import RateLimiter
from turnout.proxy.ratelimit.redis_store import RedisStore
from turnout.testing.loop import BackgroundLoop
from turnout.testing.relay import BlackHoleRelay

SLACK = 0.15  # event-loop scheduling on a loaded machine
RESET = False


@pytest.mark.xfail(
    reason=(
        "known defect (docs/reliability.md): after a black hole ends, the breaker keeps "
        "reopening for seconds instead of closing within about one cooldown"
    ),
    strict=False,
)
def test_redis_black_holed_and_restored_under_load(
    redis_server: RedisServer, bg: BackgroundLoop
) -> None:
    cooldown = 1.0
    lanes = 8
    # The relay runs on its own loop (thread), as a network device would, so the load's
    # busy loop does not delay its forwarding.
    relay = BlackHoleRelay(("127.0.0.1", redis_server.port))
    port = bg.run(relay.start())

    async def main() -> tuple[Load, float, float, RedisStore, int]:
        store = RedisStore(
            f"redis://127.0.0.1:{port}/0", timeout=TIMEOUT, breaker=Breaker(5, cooldown)
        )
        limiter = RateLimiter(
            [
                rule("open", TokenBucket(rate=1, interval=86400.0, burst=10**9)),
                rule("closed", SlidingWindow(10**9, 1e6), failure_mode="closed"),
            ],
            redis=store,
        )
        load = Load()
        running = True

        async def lane(index: int) -> None:
            n = 0
            while running:
                n += 1
                start = time.perf_counter()
                result = limiter.decide(b"bh-lane%d" % index, index % 2)
                assert not isinstance(result, Decision)
                d = await result
                load.samples.append(Sample(index, start, time.perf_counter() - start, d))
                await asyncio.sleep(0.002 if n % 4 == 0 else 0)

        try:
            await store.load()
            tasks = [asyncio.create_task(lane(i)) for i in range(lanes)]
            await asyncio.sleep(0.5)
            holed_at = time.perf_counter()
            bg.call(relay.black_hole)
            try:
                await asyncio.sleep(2.0)
            finally:
                restored_at = time.perf_counter()
                bg.call(relay.restore, RESET)
            await asyncio.sleep(6.0)
            running = False
            await asyncio.gather(*tasks)
        finally:
            limiter.close()
            await store.aclose()
        return load, holed_at, restored_at, store, relay.swallowed

    gc.disable()
    try:
        load, holed_at, restored_at, store, swallowed = asyncio.run(main())
    finally:
        gc.enable()
        bg.run(relay.close())
    samples = load.samples
    assert swallowed > 0  # the relay did receive commands and dropped them

    worst_sample = max(samples, key=lambda s: s.latency)
    worst = worst_sample.latency
    when = worst_sample.start - holed_at
    assert worst <= TIMEOUT + SLACK, f"a decision took {worst * 1000:.1f} ms at {when:+.3f}s"

    during = [s for s in samples if holed_at + TIMEOUT + SLACK < s.start < restored_at]
    assert during and all(s.decision.degraded for s in during)
    for s in during:
        d = s.decision
        if s.lane % 2 == 0:
            assert d.allowed and d.remaining is None
        else:
            assert not d.allowed and d.remaining is None
    assert store.breaker.opens >= 1
    assert statistics.median(s.latency for s in during) < 0.005  # short-circuited

    healthy = [s for s in samples if s.start > restored_at and not s.decision.degraded]
    assert healthy, "never recovered"
    recovered_after = min(s.start for s in healthy) - restored_at
    assert recovered_after <= cooldown + TIMEOUT + SLACK + 0.5
    late = [
        round(s.start - restored_at, 2)
        for s in samples
        if s.start > restored_at + recovered_after and s.decision.degraded
    ]
    print("late degraded", len(late), late[:20], late[-5:], store.breaker.opens, store.timeouts)
    assert store.breaker.state_name == "closed"
    print(
        f"\nblack hole: {len(samples)} decisions, worst {worst * 1000:.1f} ms, "
        f"{store.timeouts} timeouts, {store.short_circuits} short-circuited, "
        f"recovered {recovered_after * 1000:.0f} ms after the relay forwarded again"
    )
