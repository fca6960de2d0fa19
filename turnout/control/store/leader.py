"""``LeaderLock``: elects one process among the replicas sharing a store.

PostgreSQL: the lock is a session-level advisory lock, keyed by a stable 64-bit hash of
the lock's name, held on a dedicated asyncpg connection (application_name
``turnout-leader``). ``run`` tries ``pg_try_advisory_lock`` every ``retry_interval`` until
it succeeds, then checks the connection every ``retry_interval`` (``SELECT 1``, bounded
by the store's timeout). If the connection is lost the server releases the lock with the
session, this process steps down (``is_leader = False``, ``on_change(False)``) and retries
on a new connection, so another replica takes over within about two retry intervals.
Between the loss and the detection two replicas may both believe they lead for up to one
retry interval: reconcilers must tolerate that (their writes go through ``Store.commit``).

SQLite: one process per database file, so it leads at once. Cancelling ``run`` steps down
and closes the connection, which releases the lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Final

from turnout.control.store.errors import StoreError, reason
from turnout.control.store.repository import Store

log = logging.getLogger("turnout.control.store")

APPLICATION_NAME: Final = "turnout-leader"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (``hash()`` is salted)."""
    digest = hashlib.blake2b(f"turnout-leader:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LeaderLock:
    """Run ``run()`` as a task; ``is_leader`` tells whether this process leads now."""

    def __init__(
        self, store: Store, name: str = "turnout-reconcilers", *, retry_interval: float = 1.0
    ) -> None:
        self.store = store
        self.name = name
        self.retry_interval = retry_interval
        self.key = lock_key(name)
        self.is_leader = False
        self._on_change: Callable[[bool], None] | None = None

    def _set(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        log.info("leader lock %r: %s", self.name, "acquired" if leader else "released")
        if self._on_change is not None:
            try:
                self._on_change(leader)
            except Exception:
                log.exception("leader lock %r: on_change(%s) failed", self.name, leader)

    async def run(self, on_change: Callable[[bool], None] | None = None) -> None:
        """Until cancelled; never raises anything else."""
        self._on_change = on_change
        try:
            if self.store.dialect != "postgresql":
                self._set(True)
                await asyncio.Event().wait()  # forever, until cancelled
            else:
                await self._contend()
        finally:
            self._set(False)

    async def _contend(self) -> None:
        failing = False
        while True:
            conn: Any = None
            try:
                conn = await self.store.connect_dedicated(APPLICATION_NAME)
                if failing:
                    log.warning("leader lock %r: connected to the store again", self.name)
                    failing = False
                while True:
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
                        break
                    await asyncio.sleep(self.retry_interval)
                self._set(True)
                while True:
                    await asyncio.sleep(self.retry_interval)
                    await conn.fetchval("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing or self.is_leader:
                    log.warning(
                        "leader lock %r: lost the store connection (%s)%s",
                        self.name,
                        exc if isinstance(exc, StoreError) else reason(exc),
                        "; stepping down" if self.is_leader else "",
                    )
                failing = True
                self._set(False)
            finally:
                if conn is not None:
                    await _release(conn, self.key, self.is_leader)
            await asyncio.sleep(self.retry_interval)


async def _release(conn: Any, key: int, held: bool) -> None:
    """Unlock (when held and the connection still answers) and close the connection."""
    if conn.is_closed():
        return
    try:
        if held:
            await conn.execute("SELECT pg_advisory_unlock($1)", key, timeout=1.0)
        await conn.close(timeout=1.0)
    except Exception:
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise
