"""PostgreSQL black-holed for one replica: its leader lock and revision feed go through
a relay process (``python -m turnout.testing.relay``) that keeps accepting and reading
but forwards nothing, while the other replica reaches the server directly.

Documented behaviour (docs/reliability.md, "Dependency faults"): the cut-off replica
steps down within a bound (its lock connection fails its ``SELECT 1``; closing it ends
the server session and so releases the advisory lock) and the other replica takes over;
a write on the cut-off replica raises ``StoreUnavailable`` within two store timeouts
instead of hanging; when the relay forwards again, its feed reconnects and resyncs to
the revisions committed meanwhile, writes work again, and leadership does not flap back.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.engine import make_url

from tests.integration.control.test_feed import put, running
from tests.integration.control.test_leader import RETRY, Contender, leaders
from turnout.control.store import RevisionFeed, open_store
from turnout.control.store.errors import StoreUnavailable

WaitFor = Callable[..., Awaitable[float]]
TIMEOUT = 1.0  # the cut-off replica's store timeout


def test_leader_lock_and_feed_through_a_black_hole(pg_url: str, wait_for: WaitFor) -> None:
    target = make_url(pg_url)
    relay = subprocess.Popen(
        [sys.executable, "-m", "turnout.testing.relay", str(target.port or 5432)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert relay.stdout is not None
    relay_port = int(relay.stdout.readline())
    via_relay = target.set(port=relay_port).render_as_string(hide_password=False)
    figures: dict[str, float] = {}

    async def main() -> None:
        a = await open_store(via_relay, timeout=TIMEOUT)
        b = await open_store(pg_url)
        seen: list[int] = []

        async def on_revision(n: int) -> None:
            seen.append(n)

        feed = RevisionFeed(a, on_revision, poll_interval=0.5)
        try:
            async with running(feed):
                ca = Contender(a)
                await wait_for(lambda: ca.lock.is_leader and feed.connected, 5)
                cb = Contender(b)
                await asyncio.sleep(3 * RETRY)
                assert leaders(ca, cb) == [ca]
                await b.commit([put("before")], actor="t")
                await wait_for(lambda: 1 in seen, 2)

                relay.send_signal(signal.SIGUSR1)
                holed = time.monotonic()
                # A write on the cut-off replica fails fast and clearly.
                with pytest.raises(StoreUnavailable):
                    await a.commit([put("lost")], actor="t")
                figures["write failed"] = time.monotonic() - holed
                await wait_for(lambda: not ca.lock.is_leader, 4 * TIMEOUT + 2)
                figures["stepped down"] = time.monotonic() - holed
                await wait_for(lambda: cb.lock.is_leader, 4 * TIMEOUT + 2)
                figures["other took over"] = time.monotonic() - holed
                assert leaders(ca, cb) == [cb]
                # The other replica keeps committing meanwhile.
                for i in range(3):
                    await b.commit([put(f"during{i}")], actor="t")
                latest = await b.latest_revision()
                await asyncio.sleep(1.0)
                assert latest not in seen  # the feed is deaf while the hole lasts

                relay.send_signal(signal.SIGUSR2)
                restored = time.monotonic()
                await wait_for(lambda: latest in seen, 10)
                figures["feed resynced"] = time.monotonic() - restored
                started = time.monotonic()
                while True:
                    try:
                        await a.commit([put("after")], actor="t")
                        break
                    except StoreUnavailable:
                        assert time.monotonic() - started < 10, "writes never came back"
                        await asyncio.sleep(0.1)
                figures["write works"] = time.monotonic() - restored
                await asyncio.sleep(5 * RETRY)
                assert leaders(ca, cb) == [cb]  # no flapping back
                assert ca.changes == [True, False] and cb.changes == [True]
                await cb.stop()
                await ca.stop()
        finally:
            await a.close()
            await b.close()

    try:
        asyncio.run(main())
    finally:
        relay.terminate()
        _, err = relay.communicate(timeout=10)
    print(
        "\nPostgreSQL black hole: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in figures.items())
        + f"; relay {err.decode().strip()} bytes"
    )
    # Bounds: a write is two store timeouts (the pooled connection's ping, then a
    # connect); stepping down is a retry interval plus the SELECT 1 timeout plus the
    # release's own bounded unlock and close; the other replica's next try follows.
    assert figures["write failed"] <= 2 * TIMEOUT + 1.0
    assert figures["other took over"] <= RETRY + 3 * TIMEOUT + RETRY + 2.0
