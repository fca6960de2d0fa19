"""``StoreBase``: the store's engine, connections and transactions, shared by its tables.

A pooled connection per read (its implicit transaction rolled back at the end), a write
transaction per write (``BEGIN IMMEDIATE`` on SQLite, see ``engine._sqlite_engine``),
REPEATABLE READ snapshots for multi-table reads on PostgreSQL, and every driver error
translated by ``errors.translate`` (``_guard``). ``Store`` (``repository``) adds the
tables' queries on top, one mixin per group of tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from turnout.control.store.errors import (
    StoreError,
    driver_errors,
    translate,
)
from turnout.control.store.sealing import Sealer
from turnout.core.clock import SYSTEM_CLOCK, Clock, utcnow

DRIVER_ERRORS: Final = driver_errors()
SQLITE_IMMEDIATE: Final = "turnout_sqlite_immediate"  # see engine._sqlite_engine
COMMIT_LOCK: Final = 0x7475726E6F7574 + 1  # advisory-lock key serialising commits


class StoreBase:
    """The persistent store's plumbing; create a ``Store`` with ``engine.open_store``."""

    def __init__(
        self,
        engine: AsyncEngine,
        url: URL,
        *,
        display: str,
        timeout: float,
        clock: Clock = SYSTEM_CLOCK,
        sealer: Sealer | None = None,
    ) -> None:
        self.clock = clock
        self.sealer = sealer or Sealer(None)  # Secret content at rest (see sealing.py)
        self._engine = engine
        self._sa_url = url  # carries the password: never log or show it
        self._timeout = timeout
        self.dialect: str = engine.dialect.name
        self.url: str = display
        self._pg = self.dialect == "postgresql"
        if self._pg:
            self._write_engine = engine
            self._snapshot_engine = engine.execution_options(isolation_level="REPEATABLE READ")
        else:
            self._write_engine = engine.execution_options(**{SQLITE_IMMEDIATE: True})
            self._snapshot_engine = engine
        self._commit_lock = asyncio.Lock()
        self._touched: dict[str, float] = {}

    @property
    def timeout(self) -> float:
        return self._timeout

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except DRIVER_ERRORS as exc:
            raise translate(exc, self.url, self._secret) from exc

    @property
    def _secret(self) -> str | None:
        password = self._sa_url.password
        return password if isinstance(password, str) and password else None

    @asynccontextmanager
    async def _connection(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """A pooled connection; a read's implicit transaction is rolled back at the end."""
        async with engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
        async with self._write_engine.begin() as conn:
            yield conn

    def _now(self) -> datetime:
        return utcnow(self.clock)

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        with self._guard():
            async with self._connection(self._engine) as conn:
                await conn.execute(select(1))

    async def connect_dedicated(self, application_name: str) -> Any:
        """PostgreSQL only: a new asyncpg connection outside the pool (for LISTEN and
        session advisory locks), bounded by the store's timeout. The caller closes it."""
        if not self._pg:
            raise StoreError("dedicated connections exist only on PostgreSQL")
        import asyncpg

        dsn = self._sa_url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            return await asyncpg.connect(
                dsn,
                timeout=self._timeout,
                command_timeout=self._timeout,
                server_settings={"application_name": application_name},
            )
        except DRIVER_ERRORS as exc:
            raise translate(exc, self.url, self._secret) from exc
