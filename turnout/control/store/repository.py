"""``Store``: objects, numbered revisions, audit records and API tokens (async).

Every write of objects goes through ``Store.commit``, one transaction serialised across
processes (PostgreSQL: ``pg_advisory_xact_lock(COMMIT_LOCK)``; SQLite: ``BEGIN
IMMEDIATE``) and, within a process, by an ``asyncio.Lock`` so that waiting commits do
not hold pooled connections. Inside it the store reads the current objects and the
latest revision, applies the changes in order to an in-memory copy (``plan.Plan``: pure
logic, no SQL; the value types live in ``records``), hands the whole resulting object
list to the caller's ``validate`` callback, and only then writes: the changed object
rows (``resource_version`` = the new revision number), one ``revisions`` row (number =
latest + 1, a snapshot of every manifest, a summary of the changes), one ``audit`` row
with a YAML diff, and on PostgreSQL a ``pg_notify`` that ``RevisionFeed``s in other
processes receive when the transaction commits. Because the revision number is computed
under the lock and is the primary key, revision numbers have no gaps and no duplicates.
A put whose normalised content (apiVersion, labels, annotations, spec) equals the stored
one is "unchanged"; if nothing changes no revision is written.

Every other write (status, audit, tokens) is a short transaction too; on SQLite all
writes start with ``BEGIN IMMEDIATE`` so that a read-then-write never fails with "database
is locked". Reads of several tables (``load``) run in one REPEATABLE READ transaction on
PostgreSQL (SQLite's deferred transaction is a snapshot already).

Driver errors (and only those) are translated by ``errors.translate``: unreachable,
timed-out or lost connections → ``StoreUnavailable``. Each network step is bounded by the
store's timeout (asyncpg ``timeout``/``command_timeout``; a commit waiting longer than that
for another replica's commit fails too), so a call fails within about one timeout when the
server is gone, two when it hangs (a pooled connection's ping, then a new connect).
``changes_to_reach`` computes the changes that turn the current objects into a revision's
snapshot: the store's side of a rollback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import RowMapping, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from turnout.control.store import tables as t
from turnout.control.store.errors import (
    Conflict,
    Invalid,
    NotFound,
    StoreError,
    StoreUnavailable,
    driver_errors,
    translate,
)
from turnout.control.store.plan import Plan, changes_to_reach, manifest_key, redacted
from turnout.control.store.records import (
    AuditEntry,
    Change,
    ChangeResult,
    CommitResult,
    ObjectKey,
    Progress,
    RevisionInfo,
    StoredObject,
    TokenRecord,
    describe,
    rfc3339,
)

log = logging.getLogger("turnout.control.store")
DRIVER_ERRORS: Final = driver_errors()

COMMIT_LOCK: Final = 0x7475726E6F7574 + 1  # advisory-lock key serialising commits
REVISIONS_CHANNEL: Final = "turnout_revisions"  # NOTIFY channel, payload = revision number
SQLITE_IMMEDIATE: Final = "turnout_sqlite_immediate"  # see engine._sqlite_engine
TOUCH_INTERVAL: Final = 60.0  # seconds between last_used_at updates of one token


# -- row conversion -----------------------------------------------------------------------


def _object(m: RowMapping) -> StoredObject:
    return StoredObject(
        kind=m["kind"],
        namespace=m["namespace"],
        name=m["name"],
        api_version=m["api_version"],
        labels=dict(m["labels"] or {}),
        annotations=dict(m["annotations"] or {}),
        spec=m["spec"],
        status=m["status"],
        resource_version=int(m["resource_version"]),
        generation=int(m["generation"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _object_values(obj: StoredObject) -> dict[str, Any]:
    return {
        "kind": obj.kind,
        "namespace": obj.namespace,
        "name": obj.name,
        "api_version": obj.api_version,
        "labels": obj.labels,
        "annotations": obj.annotations,
        "spec": obj.spec,
        "status": obj.status,
        "resource_version": obj.resource_version,
        "generation": obj.generation,
        "created_at": obj.created_at,
        "updated_at": obj.updated_at,
    }


def _revision(m: RowMapping) -> RevisionInfo:
    return RevisionInfo(
        number=int(m["number"]),
        created_at=m["created_at"],
        actor=m["actor"],
        message=m["message"],
        changes=[dict(c) for c in m["changes"] or []],
        rollback_of=m["rollback_of"],
    )


def _audit(m: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=int(m["id"]),
        time=m["time"],
        actor=m["actor"],
        action=m["action"],
        result=m["result"],
        target=m["target"],
        revision=m["revision"],
        message=m["message"],
        diff=m["diff"],
        remote=m["remote"],
    )


def _token(m: RowMapping) -> TokenRecord:
    return TokenRecord(
        id=m["id"],
        name=m["name"],
        role=m["role"],
        namespaces=list(m["namespaces"] or []),
        secret_hash=m["secret_hash"],
        created_at=m["created_at"],
        created_by=m["created_by"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        last_used_at=m["last_used_at"],
    )


def _progress(m: RowMapping) -> Progress:
    return Progress(
        reconciler=m["reconciler"],
        key=(m["kind"], m["namespace"], m["name"]),
        observed_version=int(m["observed_version"]),
        requeue_at=None if m["requeue_at"] is None else float(m["requeue_at"]),
        failures=int(m["failures"]),
        last_error=m["last_error"],
    )


_REVISION_COLUMNS = (
    t.revisions.c.number,
    t.revisions.c.created_at,
    t.revisions.c.actor,
    t.revisions.c.message,
    t.revisions.c.changes,
    t.revisions.c.rollback_of,
)


# -- the store ----------------------------------------------------------------------------


class Store:
    """The persistent store; create it with ``engine.open_store``."""

    def __init__(self, engine: AsyncEngine, url: URL, *, display: str, timeout: float) -> None:
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

    # -- objects and revisions -----------------------------------------------------------

    async def latest_revision(self) -> int:
        with self._guard():
            async with self._connection(self._engine) as conn:
                return await _latest(conn)

    async def load(self) -> tuple[int, list[StoredObject]]:
        """The latest revision and the current objects, read in one transaction."""
        with self._guard():
            async with self._connection(self._snapshot_engine) as conn:
                latest = await _latest(conn)
                return latest, await _objects(conn)

    async def get(self, kind: str, namespace: str, name: str) -> StoredObject:
        with self._guard():
            async with self._connection(self._engine) as conn:
                row = (
                    await conn.execute(
                        select(t.objects).where(_key_clause((kind, namespace, name)))
                    )
                ).first()
        if row is None:
            raise NotFound(f"{describe(kind, namespace, name)} not found")
        return _object(row._mapping)

    async def commit(
        self,
        changes: list[Change],
        *,
        actor: str,
        message: str = "",
        validate: Callable[[list[StoredObject]], list[Any]] | None = None,
        dry_run: bool = False,
        action: str = "apply",
        remote: str = "",
        rollback_of: int | None = None,
    ) -> CommitResult:
        """Apply ``changes`` as one new revision (see the module doc).

        Raises ``Conflict``, ``NotFound``, ``Invalid`` (nothing written) or
        ``StoreUnavailable``. ``dry_run``: the same checks, nothing written, the result
        carries the revision number the commit would have had.
        """
        if dry_run:
            with self._guard():
                async with self._connection(self._snapshot_engine) as conn:
                    plan = await self._plan(conn, changes, validate)
            return self._result(plan)
        async with self._commit_lock:
            with self._guard():
                async with self._transaction() as conn:
                    if self._pg:
                        await conn.execute(select(func.pg_advisory_xact_lock(COMMIT_LOCK)))
                    plan = await self._plan(conn, changes, validate)
                    if plan.changed:
                        await self._write_plan(
                            conn, plan, actor, message, action, remote, rollback_of
                        )
        return self._result(plan)

    async def _plan(
        self,
        conn: AsyncConnection,
        changes: Sequence[Change],
        validate: Callable[[list[StoredObject]], list[Any]] | None,
    ) -> Plan:
        latest = await _latest(conn)
        current = {o.key: o for o in await _objects(conn)}
        plan = Plan(revision=latest + 1, current=current, working=dict(current))
        plan.apply(changes, datetime.now(UTC))
        plan.finish()
        if validate is not None:
            problems = validate(plan.objects)
            if problems:
                raise Invalid(problems)
        return plan

    @staticmethod
    def _result(plan: Plan) -> CommitResult:
        if not plan.changed:
            return CommitResult(plan.revision - 1, plan.results, plan.objects, False)
        return CommitResult(plan.revision, plan.results, plan.objects, True)

    async def _write_plan(
        self,
        conn: AsyncConnection,
        plan: Plan,
        actor: str,
        message: str,
        action: str,
        remote: str,
        rollback_of: int | None,
    ) -> None:
        now = datetime.now(UTC)
        for key in plan.deletes:
            await conn.execute(delete(t.objects).where(_key_clause(key)))
        inserts = [o for o in plan.upserts if o.key not in plan.current]
        updates = [o for o in plan.upserts if o.key in plan.current]
        if inserts:
            await conn.execute(insert(t.objects), [_object_values(o) for o in inserts])
        for obj in updates:
            values = _object_values(obj)
            for k in ("kind", "namespace", "name"):
                del values[k]
            await conn.execute(update(t.objects).where(_key_clause(obj.key)).values(values))
        await conn.execute(
            insert(t.revisions).values(
                number=plan.revision,
                created_at=now,
                actor=actor,
                message=message,
                changes=plan.summary(),
                snapshot=[o.manifest(with_status=False) for o in plan.objects],
                rollback_of=rollback_of,
            )
        )
        await conn.execute(
            insert(t.audit).values(
                time=now,
                actor=actor,
                action=action,
                result="ok",
                target=plan.target(),
                revision=plan.revision,
                message=message,
                diff=plan.diff(),
                remote=remote,
            )
        )
        if self._pg:
            await conn.execute(select(func.pg_notify(REVISIONS_CHANNEL, str(plan.revision))))

    async def revisions(self, limit: int = 50, before: int | None = None) -> list[RevisionInfo]:
        """Revisions newest first; ``before``: only numbers below it."""
        query = select(*_REVISION_COLUMNS).order_by(t.revisions.c.number.desc()).limit(limit)
        if before is not None:
            query = query.where(t.revisions.c.number < before)
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [_revision(r._mapping) for r in rows]

    async def revision(self, number: int) -> tuple[RevisionInfo, list[dict[str, Any]]]:
        """One revision and the manifests of every object it had (status left out)."""
        query = select(*_REVISION_COLUMNS, t.revisions.c.snapshot).where(
            t.revisions.c.number == number
        )
        with self._guard():
            async with self._connection(self._engine) as conn:
                row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"revision {number} not found")
        return _revision(row._mapping), [dict(m) for m in row._mapping["snapshot"] or []]

    async def set_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Replace an object's status; no revision, resource_version unchanged."""
        query = update(t.objects).where(_key_clause((kind, namespace, name))).values(status=status)
        with self._guard():
            async with self._transaction() as conn:
                count = (await conn.execute(query)).rowcount
        if not count:
            raise NotFound(f"{describe(kind, namespace, name)} not found")

    # -- reconciler progress -------------------------------------------------------------

    async def progress(self, reconciler: str) -> list[Progress]:
        """Everything ``reconciler`` recorded, sorted by object key."""
        p = t.reconciler_progress
        query = (
            select(p)
            .where(p.c.reconciler == reconciler)
            .order_by(p.c.kind, p.c.namespace, p.c.name)
        )
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [_progress(r._mapping) for r in rows]

    async def save_progress(self, rec: Progress) -> None:
        """Insert or replace one reconciler's progress on one object."""
        kind, namespace, name = rec.key
        values = {
            "reconciler": rec.reconciler,
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "observed_version": rec.observed_version,
            "requeue_at": rec.requeue_at,
            "failures": rec.failures,
            "last_error": rec.last_error,
            "updated_at": datetime.now(UTC),
        }
        with self._guard():
            async with self._transaction() as conn:
                await conn.execute(delete(t.reconciler_progress).where(_progress_clause(rec)))
                await conn.execute(insert(t.reconciler_progress).values(values))

    async def drop_progress(self, reconciler: str, key: ObjectKey) -> None:
        query = delete(t.reconciler_progress).where(
            _progress_clause(Progress(reconciler, key, 0, None))
        )
        with self._guard():
            async with self._transaction() as conn:
                await conn.execute(query)

    # -- audit ---------------------------------------------------------------------------

    async def record_audit(
        self,
        *,
        actor: str,
        action: str,
        result: str,
        target: str = "",
        revision: int | None = None,
        message: str = "",
        diff: str = "",
        remote: str = "",
    ) -> None:
        query = insert(t.audit).values(
            time=datetime.now(UTC),
            actor=actor,
            action=action,
            result=result,
            target=target,
            revision=revision,
            message=message,
            diff=diff,
            remote=remote,
        )
        with self._guard():
            async with self._transaction() as conn:
                await conn.execute(query)

    async def audit(
        self,
        limit: int = 100,
        before_id: int | None = None,
        actor: str | None = None,
        result: str | None = None,
    ) -> list[AuditEntry]:
        """Audit entries newest first; ``before_id`` pages to older ones."""
        query = select(t.audit).order_by(t.audit.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(t.audit.c.id < before_id)
        if actor is not None:
            query = query.where(t.audit.c.actor == actor)
        if result is not None:
            query = query.where(t.audit.c.result == result)
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [_audit(r._mapping) for r in rows]

    # -- tokens --------------------------------------------------------------------------

    async def create_token(self, rec: TokenRecord) -> None:
        """Store a new token; ``Conflict`` when a non-revoked token has the same name."""
        taken = select(t.tokens.c.id).where(
            or_(
                t.tokens.c.id == rec.id,
                and_(t.tokens.c.name == rec.name, t.tokens.c.revoked_at.is_(None)),
            )
        )
        values = {
            "id": rec.id,
            "name": rec.name,
            "role": rec.role,
            "namespaces": list(rec.namespaces),
            "secret_hash": rec.secret_hash,
            "created_at": rec.created_at,
            "created_by": rec.created_by,
            "expires_at": rec.expires_at,
            "revoked_at": rec.revoked_at,
            "last_used_at": rec.last_used_at,
        }
        conflict = Conflict(f"a token named {rec.name!r} exists already")
        try:
            with self._guard():
                async with self._transaction() as conn:
                    if (await conn.execute(taken)).first() is not None:
                        raise conflict
                    await conn.execute(insert(t.tokens).values(values))
        except StoreError as exc:
            # Two creates racing past the check: the unique index decides.
            if isinstance(exc.__cause__, IntegrityError):
                raise conflict from exc.__cause__
            raise

    async def token(self, token_id: str) -> TokenRecord | None:
        with self._guard():
            async with self._connection(self._engine) as conn:
                row = (
                    await conn.execute(select(t.tokens).where(t.tokens.c.id == token_id))
                ).first()
        return None if row is None else _token(row._mapping)

    async def tokens(self, include_revoked: bool = False) -> list[TokenRecord]:
        query = select(t.tokens).order_by(t.tokens.c.created_at, t.tokens.c.id)
        if not include_revoked:
            query = query.where(t.tokens.c.revoked_at.is_(None))
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [_token(r._mapping) for r in rows]

    async def revoke_token(self, id_or_name: str) -> TokenRecord:
        """Revoke by id, or by the name of a non-revoked token; returns the record.
        Revoking a revoked token (by id) returns it unchanged."""
        by_id = select(t.tokens).where(t.tokens.c.id == id_or_name)
        by_name = select(t.tokens).where(
            t.tokens.c.name == id_or_name, t.tokens.c.revoked_at.is_(None)
        )
        with self._guard():
            async with self._transaction() as conn:
                row = (await conn.execute(by_id)).first() or (await conn.execute(by_name)).first()
                if row is None:
                    raise NotFound(f"token {id_or_name!r} not found")
                rec = _token(row._mapping)
                if rec.revoked_at is not None:
                    return rec
                now = datetime.now(UTC)
                await conn.execute(
                    update(t.tokens)
                    .where(t.tokens.c.id == rec.id, t.tokens.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
        return dataclasses.replace(rec, revoked_at=now)

    async def touch_token(self, token_id: str) -> None:
        """Record that a token was used: at most once a minute, errors only logged."""
        mono = time.monotonic()
        last = self._touched.get(token_id)
        if last is not None and mono - last < TOUCH_INTERVAL:
            return
        self._touched[token_id] = mono
        if len(self._touched) > 10_000:
            self._touched = {token_id: mono}
        now = datetime.now(UTC)
        query = (
            update(t.tokens)
            .where(
                t.tokens.c.id == token_id,
                or_(
                    t.tokens.c.last_used_at.is_(None),
                    t.tokens.c.last_used_at < now - timedelta(seconds=TOUCH_INTERVAL),
                ),
            )
            .values(last_used_at=now)
        )
        try:
            with self._guard():
                async with self._transaction() as conn:
                    await conn.execute(query)
        except StoreError as exc:
            level = logging.DEBUG if isinstance(exc, StoreUnavailable) else logging.WARNING
            log.log(level, "store: cannot record the use of token %s: %s", token_id, exc)

    async def has_tokens(self) -> bool:
        """Whether any non-revoked token exists."""
        query = select(exists().where(t.tokens.c.revoked_at.is_(None)))
        with self._guard():
            async with self._connection(self._engine) as conn:
                return bool((await conn.execute(query)).scalar())


def _progress_clause(rec: Progress) -> Any:
    p = t.reconciler_progress
    kind, namespace, name = rec.key
    return and_(
        p.c.reconciler == rec.reconciler,
        p.c.kind == kind,
        p.c.namespace == namespace,
        p.c.name == name,
    )


def _key_clause(key: ObjectKey) -> Any:
    kind, namespace, name = key
    return and_(
        t.objects.c.kind == kind, t.objects.c.namespace == namespace, t.objects.c.name == name
    )


async def _latest(conn: AsyncConnection) -> int:
    value = (await conn.execute(select(func.coalesce(func.max(t.revisions.c.number), 0)))).scalar()
    return int(value or 0)


async def _objects(conn: AsyncConnection) -> list[StoredObject]:
    query = select(t.objects).order_by(t.objects.c.kind, t.objects.c.namespace, t.objects.c.name)
    return [_object(r._mapping) for r in (await conn.execute(query)).all()]


__all__ = [
    "COMMIT_LOCK",
    "REVISIONS_CHANNEL",
    "SQLITE_IMMEDIATE",
    "AuditEntry",
    "Change",
    "ChangeResult",
    "CommitResult",
    "ObjectKey",
    "Progress",
    "RevisionInfo",
    "Store",
    "StoredObject",
    "TokenRecord",
    "changes_to_reach",
    "describe",
    "manifest_key",
    "redacted",
    "rfc3339",
]
