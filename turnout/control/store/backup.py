"""``turnout backup`` / ``turnout restore``: the whole store to and from one file.

The file is JSON lines: a header ``{"format": "turnout-backup", "version": 1, "schema":
<Alembic revision>, "secretsKid": <key id or null>, "created": ..., "source": ...}``,
then one ``{"table": NAME, "row": {...}}`` per row of ``objects``, ``revisions``,
``audit``, ``tokens``, ``reconciler_progress`` and ``store_meta``, then ``{"end": COUNTS}``
(a file cut short is refused). Timestamps are RFC 3339 text, JSON columns stay JSON.

Rows are copied as stored: sealed Secrets stay sealed (the file holds no Secret in
clear), tokens only as hashes. These are offline operations on a store URL, not admin
API calls, because they move what the API never returns (token hashes, ciphertext, the
whole audit log) and must work with the gateway stopped. ``restore`` writes into an
empty store (migrated to the same schema) in one transaction, sets PostgreSQL's audit id
sequence past the restored ids, then opens the store with the target's keyring: Secrets
sealed with another key are re-sealed with the target's primary key, which needs the
source's key in the keyring (checked before anything is written: ``SecretsKeyError``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any, Final

from alembic.script import ScriptDirectory
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.control.store import tables as t
from turnout.control.store.connection import DRIVER_ERRORS
from turnout.control.store.engine import (
    alembic_config,
    create_engine,
    display_url,
    migrate,
    normalise_url,
    open_store,
)
from turnout.control.store.engine import store_url as store_url
from turnout.control.store.errors import StoreError as StoreError
from turnout.control.store.sealed_rows import KID_KEY
from turnout.control.store.sealing import KEY_ENV as KEY_ENV
from turnout.control.store.sealing import Keyring, SecretsKeyError
from turnout.control.store.sealing import load_keyring as load_keyring

FORMAT: Final = "turnout-backup"
VERSION: Final = 1
TABLES: Final[tuple[Table, ...]] = (
    t.objects,
    t.revisions,
    t.audit,
    t.tokens,
    t.reconciler_progress,
    t.store_meta,
)
BY_NAME: Final = {table.name: table for table in TABLES}
VERSION_TABLE: Final = "turnout_schema_version"  # migrations/env.py


class BackupError(StoreError):
    """The backup file cannot be written or restored (the message says why)."""


def schema_head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return str(head)


def _encode(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[key] = value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
    return out


def _decode(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        column = table.columns.get(key)
        if column is None:
            raise BackupError(f"table {table.name} has no column {key!r}")
        if isinstance(column.type, t.UTCDateTime) and isinstance(value, str):
            value = datetime.fromisoformat(value)
        out[key] = value
    return out


async def backup(url: str, out: IO[str], *, store_timeout: float = 10.0) -> dict[str, int]:
    """Write the store at ``url`` to ``out``; returns the rows written per table."""
    sa_url = normalise_url(url)
    engine = create_engine(sa_url, timeout=store_timeout)
    counts: dict[str, int] = {}
    try:
        # One snapshot of every table (REPEATABLE READ on PostgreSQL).
        snap = engine.execution_options(isolation_level="REPEATABLE READ")
        if engine.dialect.name == "sqlite":
            snap = engine
        async with snap.connect() as conn:
            schema = await _schema(conn)
            if schema != schema_head():
                raise BackupError(
                    f"the store's schema is {schema}, this Turnout's is {schema_head()}: "
                    "back it up with the Turnout that runs it, or start this one on it first"
                )
            kid = (
                await conn.execute(
                    select(t.store_meta.c.value).where(t.store_meta.c.key == KID_KEY)
                )
            ).scalar()
            header = {
                "format": FORMAT,
                "version": VERSION,
                "schema": schema,
                "secretsKid": kid,
                "created": datetime.now(UTC).isoformat(),
                "source": display_url(sa_url),
            }
            out.write(json.dumps(header) + "\n")
            for table in TABLES:
                counts[table.name] = 0
                query = select(table).order_by(*table.primary_key.columns)
                result = await conn.stream(query)
                async for row in result:
                    line = {"table": table.name, "row": _encode(table, dict(row._mapping))}
                    out.write(json.dumps(line, separators=(",", ":")) + "\n")
                    counts[table.name] += 1
            out.write(json.dumps({"end": counts}) + "\n")
    finally:
        await engine.dispose()
    return counts


async def _schema(conn: AsyncConnection) -> str:
    try:
        query = text(f"SELECT version_num FROM {VERSION_TABLE}")
        return str((await conn.execute(query)).scalar())
    except DRIVER_ERRORS:
        raise BackupError(f"not a Turnout store (it has no {VERSION_TABLE} table)") from None


def _lines(source: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise BackupError(f"line {number}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise BackupError(f"line {number}: expected an object")
        yield number, value


async def restore(
    url: str, source: IO[str], *, keyring: Keyring | None, store_timeout: float = 10.0
) -> dict[str, int]:
    """Load a backup into the empty store at ``url``; returns the rows per table."""
    lines = _lines(source)
    first = next(lines, None)
    if first is None or first[1].get("format") != FORMAT:
        raise BackupError("not a Turnout backup (the first line has no format: turnout-backup)")
    header = first[1]
    if header.get("version") != VERSION or header.get("schema") != schema_head():
        raise BackupError(
            f"the backup is version {header.get('version')}, schema {header.get('schema')}; "
            f"this Turnout reads version {VERSION}, schema {schema_head()}"
        )
    kid = header.get("secretsKid")
    if kid and (keyring is None or kid not in keyring.keys):
        raise SecretsKeyError(
            f"the backup's Secrets are encrypted with key id {kid}: give the keyring that "
            "holds it (--secrets-key-file or TURNOUT_SECRETS_KEY; the target's own key "
            "first, to re-encrypt with it)"
        )
    sa_url = normalise_url(url)
    engine = create_engine(sa_url, timeout=store_timeout)
    try:
        await migrate(engine)
        counts = await _load(engine, lines)
    finally:
        await engine.dispose()
    store = await open_store(url, timeout=store_timeout, keyring=keyring)  # re-seals, checks keys
    await store.close()
    return counts


async def _load(engine: Any, lines: Iterator[tuple[int, dict[str, Any]]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    ended: dict[str, int] | None = None
    async with engine.begin() as conn:
        for table in TABLES:
            if (await conn.execute(select(func.count()).select_from(table))).scalar():
                raise BackupError(
                    f"the target store is not empty (table {table.name} has rows): restore "
                    "into a new database"
                )
        for number, line in lines:
            if "end" in line:
                ended = line["end"]
                break
            into = BY_NAME.get(str(line.get("table")))
            if into is None or not isinstance(line.get("row"), dict):
                raise BackupError(f"line {number}: unknown table {line.get('table')!r}")
            await conn.execute(insert(into).values(_decode(into, line["row"])))
            counts[into.name] = counts.get(into.name, 0) + 1
        if ended is None:
            raise BackupError("the backup file is cut short (no end line): nothing restored")
        if {k: v for k, v in ended.items() if v} != counts:
            raise BackupError(f"the backup's rows {counts} differ from its end line {ended}")
        if engine.dialect.name == "postgresql":
            await conn.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('audit', 'id'), "
                    "coalesce((SELECT max(id) FROM audit), 0) + 1, false)"
                )
            )
    return counts
