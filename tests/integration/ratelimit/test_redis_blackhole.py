"""Redis black-holed (reachable, silent) under load, then back: a private
``redis-server`` behind a ``BlackHoleRelay`` that keeps accepting and reading but
forwards nothing. Every decision returns within the call timeout plus a small slack,
fail-open rules allow and fail-closed rules refuse, the breaker opens, and the first
probe after the partition ends closes it. (It used to re-open every few seconds on a
loaded machine: a stall of the test's own process timed out all 8 calls in flight at
once, late, and they counted as 8 failures; they now count once: breaker.py. Stalls of
the relay or redis-server processes still re-open it, as real timeouts should; those
episodes are printed, not asserted.)"""

from __future__ import annotations

import asyncio
import gc
import signal
import statistics
import subprocess
import sys
import time

from tests.integration.ratelimit.conftest import RedisServer
from tests.integration.ratelimit.test_redis_store import TIMEOUT, Load, Sample, rule
from turnout.proxy.ratelimit.algorithms import Decision, SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.breaker import Breaker
from turnout.proxy.ratelimit.limiter import RateLimiter
from turnout.proxy.ratelimit.redis_store import RedisStore

SLACK = 0.15  # event-loop scheduling on a loaded machine


def test_redis_black_holed_and_restored_under_load(redis_server: RedisServer) -> None:
    cooldown = 1.0
    lanes = 8
    # The relay is a process of its own, as a network device would be: the load's busy
    # loop shares no interpreter with its forwarding.
    relay = subprocess.Popen(
        [sys.executable, "-m", "turnout.testing.relay", str(redis_server.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert relay.stdout is not None
    port = int(relay.stdout.readline())

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
            relay.send_signal(signal.SIGUSR1)
            try:
                await asyncio.sleep(2.0)
            finally:
                restored_at = time.perf_counter()
                relay.send_signal(signal.SIGUSR2)
            await asyncio.sleep(cooldown + TIMEOUT + SLACK + 0.5)
            opens_after_recovery = store.breaker.opens
            await asyncio.sleep(4.5)
            running = False
            await asyncio.gather(*tasks)
        finally:
            limiter.close()
            await store.aclose()
        return load, holed_at, restored_at, store, opens_after_recovery

    gc.disable()
    try:
        load, holed_at, restored_at, store, opens_after_recovery = asyncio.run(main())
    finally:
        gc.enable()
        relay.terminate()
        _, err = relay.communicate(timeout=10)
    swallowed = int(err.decode().split("swallowed ")[1].split()[0])
    samples = load.samples
    assert swallowed > 0  # the relay did receive commands and dropped them

    worst_sample = max(samples, key=lambda s: s.latency)
    worst = worst_sample.latency
    when = worst_sample.start - holed_at

    healthy = [s for s in samples if s.start > restored_at and not s.decision.degraded]
    recovered_after = min((s.start for s in healthy), default=99.0) - restored_at
    last_degraded = max(s.start - restored_at for s in samples if s.decision.degraded)
    print(
        f"\nblack hole: {len(samples)} decisions, worst {worst * 1000:.1f} ms at {when:+.2f}s, "
        f"{store.timeouts} timeouts ({store.late_timeouts} late), "
        f"{store.short_circuits} short-circuited, "
        f"{store.breaker.opens} breaker opens; first exact decision "
        f"{recovered_after * 1000:.0f} ms after the relay forwarded again, last degraded "
        f"{last_degraded * 1000:.0f} ms after"
    )
    # Bounded latency: at most the call timeout (+ slack). On the shared test machine
    # the odd call is descheduled longer at any time; 1 % may exceed it.
    slow = [s for s in samples if s.latency > TIMEOUT + SLACK]
    assert len(slow) <= 0.01 * len(samples), f"worst {worst * 1000:.1f} ms at {when:+.3f}s"
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

    assert healthy, "never recovered"
    # Recovery: the first probe after the hole ends succeeds within about a cooldown.
    assert recovered_after <= cooldown + TIMEOUT + SLACK + 0.5
    # After that the breaker may open again, but only for a fresh stall: on this loaded
    # 2-core machine the relay or redis-server process is now and then descheduled past
    # the 50 ms timeout, which is a real timeout for every call in flight. Each such
    # episode ends at a probe once the stall is over, but a stall here lasted up to 1.1 s,
    # so its length says how loaded the machine was, not how Turnout behaves: printed,
    # not asserted. A stall of the test's own process times calls out late and counts
    # once, so it opens nothing by itself (breaker.py, unit-tested with a fake clock).
    settled = restored_at + cooldown + TIMEOUT + SLACK + 0.5
    cut = [s.start for s in samples if s.start > settled and s.decision.degraded]
    cut.sort()
    episodes: list[tuple[float, float]] = []
    for t in cut:
        if episodes and t - episodes[-1][1] < 0.3:
            episodes[-1] = (episodes[-1][0], t)
        else:
            episodes.append((t, t))
    longest = max((b - a for a, b in episodes), default=0.0)
    print(
        f"after recovery: {store.breaker.opens - opens_after_recovery} re-opens, "
        f"{len(episodes)} degraded episodes, longest {longest * 1000:.0f} ms"
    )
