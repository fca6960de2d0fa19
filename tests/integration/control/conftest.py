"""Fixtures for the control-plane store tests: real SQLite files and real PostgreSQL.

- ``sqlite_url``: a SQLite store URL in ``tmp_path``.
- ``pg_url``: a freshly created PostgreSQL database ``turnout_test_<random>`` (dropped
  ``WITH (FORCE)`` afterwards), so tests never see each other's data. The server is
  ``$TURNOUT_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
  if it is unreachable the test fails with a clear message: CI guarantees it is up.
- ``db_url``: parametrised over both backends (ids ``sqlite`` and ``postgresql``).
- ``with_store``: ``with_store(body, **open_kwargs)`` opens a ``Store`` on ``db_url``,
  runs ``await body(store)`` under ``asyncio.run`` and closes the store.
- ``pg_terminate``: ``await pg_terminate(pg_url, application_name)`` kills that
  database's backends of one application (``turnout``, ``turnout-feed``,
  ``turnout-leader``) from another connection; returns how many.

Tests are plain sync functions that drive coroutines with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from turnout.control.store import Store, open_store

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get(
    "TURNOUT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _pg_dsn(database: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'turnout.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"turnout_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        where = make_url(PG_ADMIN_URL).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL is not reachable at {where} ({exc}); the store tests need it "
            "(start it, or point TURNOUT_TEST_POSTGRES at one)",
            pytrace=False,
        )
    try:
        yield _pg_dsn(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = {"sqlite": "sqlite_url", "postgresql": "pg_url"}[request.param]
    url: str = request.getfixturevalue(name)
    return url


StoreBody = Callable[[Store], Awaitable[T]]


@pytest.fixture
def with_store(db_url: str) -> Callable[..., Any]:
    def run(body: Callable[[Store], Awaitable[T]], **open_kwargs: Any) -> T:
        async def main() -> T:
            store = await open_store(db_url, **open_kwargs)
            try:
                return await body(store)
            finally:
                await store.close()

        return asyncio.run(main())

    return run


async def terminate_backends(url: str, application_name: str) -> int:
    """Terminate the backends of ``application_name`` connected to ``url``'s database."""
    database = make_url(url).database
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()",
            database,
            application_name,
        )
    finally:
        await conn.close()
    return sum(1 for r in rows if r[0])


async def backend_pids(url: str, application_name: str) -> list[int]:
    database = make_url(url).database
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            database,
            application_name,
        )
    finally:
        await conn.close()
    return sorted(r[0] for r in rows)


@pytest.fixture
def pg_terminate() -> Callable[[str, str], Awaitable[int]]:
    return terminate_backends


@pytest.fixture
def pg_backends() -> Callable[[str, str], Awaitable[list[int]]]:
    return backend_pids


async def eventually(check: Callable[[], bool], within: float, interval: float = 0.02) -> float:
    """Wait until ``check()`` holds; returns the seconds it took, fails after ``within``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        if loop.time() - start > within:
            pytest.fail(f"condition not met within {within} s", pytrace=True)
        await asyncio.sleep(interval)
    return loop.time() - start


@pytest.fixture
def wait_for() -> Callable[..., Awaitable[float]]:
    return eventually
