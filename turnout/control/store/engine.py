"""Opening the store: URL normalisation, the async engine, and schema migrations.

``store_url`` turns what the user typed (``--store``) into a SQLAlchemy URL:
nothing → a SQLite file ``turnout.db`` in the data dir, ``postgres[ql]://`` →
``postgresql+asyncpg://``, ``sqlite:///PATH`` → ``sqlite+aiosqlite:///PATH``.

``open_store`` creates the ``AsyncEngine`` and runs Alembic ``upgrade head`` before it
returns a ``Store``:

- PostgreSQL (asyncpg): every connect and every statement is bounded by ``timeout``
  (``timeout`` / ``command_timeout``), connections are pinged on checkout so a pool that
  lost its server reconnects instead of failing, and the upgrade runs inside one
  transaction holding ``pg_try_advisory_xact_lock(MIGRATION_LOCK)``, so two processes
  starting at once do not race: the second waits and then finds the schema current.
- SQLite (aiosqlite): WAL journal, foreign keys, a busy timeout, and SQLAlchemy (not the
  sqlite3 module) emits ``BEGIN`` — ``BEGIN IMMEDIATE`` on connections of the *write*
  engine — so transactions, DDL included, behave as documented.

Failures to connect become ``StoreUnavailable("cannot reach the store at URL: reason")``
with the password left out. Alembic is configured in code (``alembic_config``); the
``migrations`` directory ships as package data next to this module.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import event, select
from sqlalchemy import func as sa_func
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from turnout.control.store.errors import StoreError, StoreUnavailable, translate
from turnout.control.store.repository import DRIVER_ERRORS, SQLITE_IMMEDIATE, Store
from turnout.control.store.sealing import Keyring, Sealer
from turnout.core.clock import SYSTEM_CLOCK, Clock

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
DB_FILE: Final = "turnout.db"
# Arbitrary constant advisory-lock keys (bigint); the commit lock lives in repository.py.
MIGRATION_LOCK: Final = 0x7475726E6F7574  # "turnout"
MIGRATION_LOCK_WAIT: Final = 120.0  # seconds another process may spend migrating
APPLICATION_NAME: Final = "turnout"


def store_url(store: str | None, data_dir: Path) -> str:
    """The SQLAlchemy URL for ``--store`` (``None``/``""``: SQLite in ``data_dir``)."""
    if not store:
        data_dir = data_dir.expanduser()
        if not data_dir.exists():
            data_dir.mkdir(parents=True, mode=0o700)
        return f"sqlite+aiosqlite:///{(data_dir / DB_FILE).resolve()}"
    return normalise_url(store).render_as_string(hide_password=False)


def normalise_url(url: str | URL) -> URL:
    """Parse ``url`` and pick the async driver; ``ValueError`` for anything unsupported."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError) as exc:
        # The text may hold a password: name only the part before "://".
        scheme = str(url).split("://", 1)[0] if "://" in str(url) else "?"
        raise ValueError(
            f"cannot parse the store URL (scheme {scheme!r}): "
            "use postgresql://USER@HOST:PORT/DB or sqlite:///PATH"
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        if not parsed.database:
            raise ValueError("the PostgreSQL store URL names no database (…/DBNAME)")
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite" and driver in ("", "aiosqlite", "pysqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("the SQLite store needs a file: sqlite:///PATH")
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(
        f"unsupported store URL scheme {parsed.drivername!r}: "
        "use postgresql://USER@HOST:PORT/DB or sqlite:///PATH (or nothing, for SQLite "
        "in the data dir)"
    )


def display_url(url: URL) -> str:
    """``url`` for messages and status: no driver suffix, the password as ``***``."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


async def open_store(
    url: str,
    *,
    timeout: float = 2.0,  # noqa: ASYNC109
    clock: Clock = SYSTEM_CLOCK,
    keyring: Keyring | None = None,
) -> Store:
    """Create the engine, bring the schema to the latest migration, seal the store's
    Secrets with ``keyring`` (``Store.reseal``), return the ``Store``.

    Raises ``StoreUnavailable`` (within about ``timeout`` for an unreachable server),
    ``StoreError`` when the schema cannot be migrated, ``ValueError`` for a bad URL.
    ``clock`` gives the store its timestamps (creation, revisions, audit).
    ``SecretsKeyError`` when the store's Secrets are sealed with a key not in ``keyring``.
    """
    sa_url = normalise_url(url)
    where = display_url(sa_url)
    secret = sa_url.password if isinstance(sa_url.password, str) else None
    engine = create_engine(sa_url, timeout=timeout)
    store = Store(
        engine, sa_url, display=where, timeout=timeout, clock=clock, sealer=Sealer(keyring)
    )
    try:
        await migrate(engine)
        await store.reseal()
    except DRIVER_ERRORS as exc:
        await engine.dispose()
        raise translate(exc, where, secret) from exc
    except BaseException:
        await engine.dispose()
        raise
    return store


def create_engine(url: URL, *, timeout: float) -> AsyncEngine:
    """The ``AsyncEngine`` with the connection settings described in the module doc."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, timeout)
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=max(10.0, 5 * timeout),
        connect_args={
            "timeout": timeout,
            "command_timeout": timeout,
            "server_settings": {"application_name": APPLICATION_NAME},
        },
    )


def _sqlite_engine(url: URL, timeout: float) -> AsyncEngine:
    path = Path(str(url.database))
    if not path.parent.is_dir():
        raise StoreUnavailable(
            f"cannot reach the store at {display_url(url)}: directory {path.parent} does not exist"
        )
    busy_ms = int(max(timeout, 5.0) * 1000)
    engine = create_async_engine(url, connect_args={"timeout": busy_ms / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN (see "begin" below) instead of the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(SQLITE_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's ``Config`` for the store, built in code (there is no alembic.ini)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    try:
        command.upgrade(alembic_config(connection), "head")
    except CommandError as exc:
        raise StoreError(
            f"cannot migrate the store's schema: {exc} (was it created by a newer Turnout?)"
        ) from exc


async def migrate(engine: AsyncEngine) -> None:
    """Run ``upgrade head`` in one transaction, serialised across processes."""
    if engine.dialect.name == "sqlite":
        async with engine.execution_options(**{SQLITE_IMMEDIATE: True}).begin() as conn:
            await conn.run_sync(_upgrade)
        return
    async with engine.begin() as conn:
        deadline = time.monotonic() + MIGRATION_LOCK_WAIT
        lock = select(sa_func.pg_try_advisory_xact_lock(MIGRATION_LOCK))
        while not (await conn.execute(lock)).scalar_one():
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    "timed out waiting for another process to finish migrating the store"
                )
            await asyncio.sleep(0.05)
        await conn.run_sync(_upgrade)
