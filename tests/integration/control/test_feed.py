"""RevisionFeed: LISTEN/NOTIFY between stores on PostgreSQL, polling on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from turnout.control.store import Change, RevisionFeed, open_store

Terminate = Callable[[str, str], Awaitable[int]]
Backends = Callable[[str, str], Awaitable[list[int]]]
WaitFor = Callable[..., Awaitable[float]]


def put(name: str) -> Change:
    manifest = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {},
    }
    return Change("put", "HTTPRoute", "default", name, manifest)


@contextlib.asynccontextmanager
async def running(feed: RevisionFeed) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.get_running_loop().create_task(feed.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert feed.connected is False


def test_a_commit_in_one_store_reaches_the_feed_of_another(pg_url: str, wait_for: WaitFor) -> None:
    async def main() -> None:
        a, b = await open_store(pg_url), await open_store(pg_url)
        seen: list[int] = []

        async def on_revision(n: int) -> None:
            seen.append(n)

        # polling every 60 s: whatever arrives within a second came by NOTIFY
        feed = RevisionFeed(b, on_revision, poll_interval=60)
        try:
            async with running(feed):
                await wait_for(lambda: feed.connected and seen == [0], 5)
                for expected in (1, 2, 3):
                    await a.commit([put(f"r{expected}")], actor="t")
                    took = await wait_for(lambda n=expected: n in seen, 1.0)
                    assert took < 1.0
                assert seen == [0, 1, 2, 3]
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_feed_reconnects_and_resyncs_after_its_connection_is_killed(
    pg_url: str,
    pg_terminate: Terminate,
    pg_backends: Backends,
    wait_for: WaitFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="turnout.control.store")

    async def main() -> None:
        a, b = await open_store(pg_url), await open_store(pg_url)
        seen: list[int] = []

        async def on_revision(n: int) -> None:
            seen.append(n)

        feed = RevisionFeed(b, on_revision, poll_interval=60)
        try:
            async with running(feed):
                await wait_for(lambda: feed.connected, 5)
                await a.commit([put("one")], actor="t")
                await wait_for(lambda: 1 in seen, 2)
                (pid,) = await pg_backends(pg_url, "turnout-feed")

                assert await pg_terminate(pg_url, "turnout-feed") == 1
                for _ in range(200):  # until the server has ended the old session
                    if pid not in await pg_backends(pg_url, "turnout-feed"):
                        break
                    await asyncio.sleep(0.005)
                # committed while the feed is deaf (it waits 0.2 s before reconnecting):
                # no notification can reach it, only the resync after reconnecting can
                await a.commit([put("two")], actor="t")
                await wait_for(lambda: feed.connected and 2 in seen, 5)
                (new_pid,) = await pg_backends(pg_url, "turnout-feed")
                assert new_pid != pid
                assert seen[-1] == 2
                assert "reconnected to the store" in caplog.text

                # and notifications flow again on the new connection
                await a.commit([put("three")], actor="t")
                await wait_for(lambda: 3 in seen, 1.0)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_feed_survives_failing_callbacks_and_repeated_kills(
    pg_url: str, pg_terminate: Terminate, wait_for: WaitFor
) -> None:
    async def main() -> None:
        store = await open_store(pg_url, timeout=1.0)
        calls: list[int] = []

        async def on_revision(n: int) -> None:
            calls.append(n)
            raise RuntimeError("callback bug")

        feed = RevisionFeed(store, on_revision, poll_interval=0.3)
        try:
            async with running(feed) as task:
                await wait_for(lambda: calls == [0], 5)
                await store.commit([put("x")], actor="t")
                await wait_for(lambda: 1 in calls, 2)
                # kill the connection several times in a row: it keeps coming back
                for _ in range(3):
                    await pg_terminate(pg_url, "turnout-feed")
                    await asyncio.sleep(0.05)
                await wait_for(lambda: feed.connected, 10)
                assert not task.done()
        finally:
            await store.close()

    asyncio.run(main())


def test_feed_polls_on_sqlite(sqlite_url: str, wait_for: WaitFor) -> None:
    async def main() -> None:
        store = await open_store(sqlite_url)
        seen: list[int] = []

        async def on_revision(n: int) -> None:
            seen.append(n)

        feed = RevisionFeed(store, on_revision, poll_interval=0.1)
        try:
            async with running(feed):
                await wait_for(lambda: feed.connected and seen == [0], 2)
                await store.commit([put("a")], actor="t")
                await wait_for(lambda: seen == [0, 1], 1.0)
                await store.commit([put("b")], actor="t")
                await store.commit([put("c")], actor="t")
                await wait_for(lambda: seen[-1] == 3, 1.0)
                await asyncio.sleep(0.3)
                assert seen[-1] == 3 and seen.count(3) == 1  # reported once, when it grew
        finally:
            await store.close()

    asyncio.run(main())


def test_feed_poll_is_a_safety_net_on_postgresql(pg_url: str, wait_for: WaitFor) -> None:
    """A revision whose notification was lost still arrives with the next poll."""

    async def main() -> None:
        store = await open_store(pg_url)
        seen: list[int] = []

        async def on_revision(n: int) -> None:
            seen.append(n)

        feed = RevisionFeed(store, on_revision, poll_interval=0.3)
        try:
            async with running(feed):
                await wait_for(lambda: seen == [0], 5)
                # write a revision row behind the store's back: no NOTIFY is sent
                import asyncpg

                conn: Any = await asyncpg.connect(pg_url)
                try:
                    await conn.execute(
                        "INSERT INTO revisions (number, created_at, actor, message, changes,"
                        " snapshot) VALUES (1, now(), 't', '', '[]', '[]')"
                    )
                finally:
                    await conn.close()
                await wait_for(lambda: seen == [0, 1], 2)
        finally:
            await store.close()

    asyncio.run(main())
