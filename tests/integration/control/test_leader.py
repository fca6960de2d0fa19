"""LeaderLock: one leader per PostgreSQL database, failover, and SQLite's lone leader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from turnout.control.store import LeaderLock, Store, open_store
from turnout.control.store.leader import lock_key

Terminate = Callable[[str, str], Awaitable[int]]
Backends = Callable[[str, str], Awaitable[list[int]]]
WaitFor = Callable[..., Awaitable[float]]
RETRY = 0.2


class Contender:
    def __init__(self, store: Store, name: str = "turnout-reconcilers") -> None:
        self.lock = LeaderLock(store, name, retry_interval=RETRY)
        self.changes: list[bool] = []
        self.task = asyncio.get_running_loop().create_task(self.lock.run(self.changes.append))

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        assert self.lock.is_leader is False


def leaders(*cs: Contender) -> list[Contender]:
    return [c for c in cs if c.lock.is_leader]


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("turnout-reconcilers") == lock_key("turnout-reconcilers")
    assert lock_key("a") != lock_key("b")
    assert -(2**63) <= lock_key("turnout-reconcilers") < 2**63


def test_sqlite_leads_at_once(sqlite_url: str, wait_for: WaitFor) -> None:
    async def main() -> None:
        store = await open_store(sqlite_url)
        try:
            c = Contender(store)
            await wait_for(lambda: c.lock.is_leader, 1)
            await c.stop()
            assert c.changes == [True, False]
        finally:
            await store.close()

    asyncio.run(main())


def test_exactly_one_leader_and_failover_on_cancel(pg_url: str, wait_for: WaitFor) -> None:
    async def main() -> None:
        a, b = await open_store(pg_url), await open_store(pg_url)
        try:
            ca, cb = Contender(a), Contender(b)
            await wait_for(lambda: len(leaders(ca, cb)) == 1, 5)
            await asyncio.sleep(4 * RETRY)
            (first,) = leaders(ca, cb)
            other = cb if first is ca else ca
            assert other.changes == []
            await first.stop()
            assert first.changes == [True, False]
            took = await wait_for(lambda: other.lock.is_leader, 2 * RETRY + 1)
            assert took <= 2 * RETRY + 0.5
            assert other.changes == [True]
            await other.stop()
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_failover_when_the_leaders_connection_is_killed(
    pg_url: str, pg_terminate: Terminate, pg_backends: Backends, wait_for: WaitFor
) -> None:
    async def main() -> None:
        a, b = await open_store(pg_url), await open_store(pg_url)
        try:
            ca = Contender(a)
            await wait_for(lambda: ca.lock.is_leader, 5)
            (leader_pid,) = await pg_backends(pg_url, "turnout-leader")
            cb = Contender(b)
            await asyncio.sleep(3 * RETRY)
            assert leaders(ca, cb) == [ca]

            # kill only the leader's session: the server drops its advisory lock
            import asyncpg

            conn = await asyncpg.connect(pg_url)
            try:
                await conn.execute("SELECT pg_terminate_backend($1)", leader_pid)
            finally:
                await conn.close()
            took = await wait_for(lambda: cb.lock.is_leader, 2 * RETRY + 1)
            assert took <= 2 * RETRY + 0.5
            await wait_for(lambda: not ca.lock.is_leader, 2 * RETRY + 1)
            assert ca.changes == [True, False]
            # the old leader keeps contending on a new connection but does not take over
            await asyncio.sleep(4 * RETRY)
            assert leaders(ca, cb) == [cb]
            assert len(await pg_backends(pg_url, "turnout-leader")) == 2
            await cb.stop()
            await wait_for(lambda: ca.lock.is_leader, 2 * RETRY + 1)
            await ca.stop()
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_different_names_are_different_locks(pg_url: str, wait_for: WaitFor) -> None:
    async def main() -> None:
        store = await open_store(pg_url)
        try:
            c1, c2 = Contender(store, "one"), Contender(store, "two")
            await wait_for(lambda: len(leaders(c1, c2)) == 2, 5)
            await c1.stop()
            await c2.stop()
        finally:
            await store.close()

    asyncio.run(main())
