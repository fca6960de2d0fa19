"""``RevisionFeed``: tells this process about revisions committed by any process.

On PostgreSQL the feed keeps one dedicated asyncpg connection (application_name
``turnout-feed``) that ``LISTEN``s on ``turnout_revisions``; ``Store.commit`` sends the
new revision number with ``pg_notify`` in its transaction, so every replica hears of it
as soon as it is committed, and ``on_revision(n)`` is awaited for each notification, in
order. When the connection is lost (asyncpg's termination callback, or a failing periodic
query) the feed reconnects with exponential backoff (0.2 s doubling to 5 s) and, once
connected again, calls ``on_revision(latest)``: a full resync that covers whatever was
committed while it was deaf. It does the same right after the first connect, so a
consumer that loaded before the feed started misses nothing. Every ``poll_interval`` it
also reads the latest revision over the same connection (which doubles as a liveness
check) and reports it if it grew: a safety net for lost notifications.

On SQLite there is only one process per database file; the feed polls
``Store.latest_revision`` every ``poll_interval``.

``on_revision`` must be idempotent (it may see a number twice or out of date); the feed
never raises except ``CancelledError`` — errors of the callback are logged and swallowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from turnout.control.store import tables as t
from turnout.control.store.errors import StoreError, reason
from turnout.control.store.repository import REVISIONS_CHANNEL, Store

log = logging.getLogger("turnout.control.store")

BACKOFF_FIRST: Final = 0.2
BACKOFF_MAX: Final = 5.0
APPLICATION_NAME: Final = "turnout-feed"
_LATEST_SQL: Final = f"SELECT coalesce(max(number), 0) FROM {t.revisions.name}"


class _ConnectionLost(Exception):
    pass


_LOST: Final = -1  # queue item: the LISTEN connection was terminated


class RevisionFeed:
    """Calls ``on_revision(n)`` when revision ``n`` may be new; run it as a task."""

    def __init__(
        self,
        store: Store,
        on_revision: Callable[[int], Awaitable[None]],
        *,
        poll_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.on_revision = on_revision
        self.poll_interval = poll_interval
        self.connected = False
        self.last_seen = 0  # the highest revision reported so far

    async def run(self) -> None:
        """Until cancelled; never raises anything else."""
        try:
            if self.store.dialect == "postgresql":
                await self._listen_forever()
            else:
                await self._poll_forever()
        finally:
            self.connected = False

    async def _deliver(self, revision: int) -> None:
        self.last_seen = max(self.last_seen, revision)
        try:
            await self.on_revision(revision)
        except Exception:
            log.exception("revision feed: on_revision(%d) failed", revision)

    # -- SQLite: polling -----------------------------------------------------------------

    async def _poll_forever(self) -> None:
        failing = False
        first = True
        while True:
            try:
                latest = await self.store.latest_revision()
            except StoreError as exc:
                self.connected = False
                if not failing:
                    log.warning("revision feed: cannot read the store: %s", exc)
                failing = True
            else:
                if failing:
                    log.warning("revision feed: the store is readable again")
                failing = False
                self.connected = True
                if first or latest > self.last_seen:
                    first = False
                    await self._deliver(latest)
            await asyncio.sleep(self.poll_interval)

    # -- PostgreSQL: LISTEN/NOTIFY -------------------------------------------------------

    async def _listen_forever(self) -> None:
        backoff = BACKOFF_FIRST
        lost_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            conn: Any = None
            try:
                conn = await self.store.connect_dedicated(APPLICATION_NAME)
                queue: asyncio.Queue[int] = asyncio.Queue()
                await self._subscribe(conn, queue)
                self.connected = True
                backoff = BACKOFF_FIRST
                if lost_since is not None:
                    log.warning(
                        "revision feed: reconnected to the store after %.1f s; resyncing",
                        loop.time() - lost_since,
                    )
                    lost_since = None
                await self._deliver(await self._latest(conn))
                await self._pump(conn, queue)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                if lost_since is None:
                    lost_since = loop.time()
                    log.warning(
                        "revision feed: not connected to the store (%s); retrying",
                        exc if isinstance(exc, StoreError) else reason(exc),
                    )
            finally:
                self.connected = False
                if conn is not None:
                    await _close(conn)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _subscribe(self, conn: Any, queue: asyncio.Queue[int]) -> None:
        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                queue.put_nowait(int(payload))
            except ValueError:
                log.warning("revision feed: ignoring notification %r", payload)

        def on_terminate(_conn: Any) -> None:
            queue.put_nowait(_LOST)

        conn.add_termination_listener(on_terminate)
        await conn.add_listener(REVISIONS_CHANNEL, on_notify)

    async def _pump(self, conn: Any, queue: asyncio.Queue[int]) -> None:
        while True:
            try:
                async with asyncio.timeout(self.poll_interval):
                    item = await queue.get()
            except TimeoutError:
                latest = await self._latest(conn)  # also proves the connection is alive
                if latest > self.last_seen:
                    await self._deliver(latest)
                continue
            if item == _LOST or conn.is_closed():
                raise _ConnectionLost("the connection was closed")
            await self._deliver(item)

    async def _latest(self, conn: Any) -> int:
        return int(await conn.fetchval(_LATEST_SQL, timeout=self.store.timeout) or 0)


async def _close(conn: Any) -> None:
    """Close an asyncpg connection, politely if it answers quickly."""
    if conn.is_closed():
        return
    try:
        await conn.close(timeout=1.0)
    except Exception:
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise
