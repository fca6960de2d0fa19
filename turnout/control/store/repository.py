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

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import RowMapping, and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.control.store import tables as t
from turnout.control.store.auth_tables import AuditAndTokens
from turnout.control.store.connection import COMMIT_LOCK, DRIVER_ERRORS, SQLITE_IMMEDIATE
from turnout.control.store.errors import (
    Invalid,
    NotFound,
)
from turnout.control.store.observations_table import ObservationsTable
from turnout.control.store.plan import (
    Plan,
    changes_to_reach,
    manifest_key,
    merged_status,
    redacted,
)
from turnout.control.store.progress_table import ProgressTable
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
from turnout.control.store.remediation_tables import RemediationTables
from turnout.control.store.sealed_rows import SealedRows
from turnout.control.store.sealing import Sealer

log = logging.getLogger("turnout.control.store")

REVISIONS_CHANNEL: Final = "turnout_revisions"  # NOTIFY channel, payload = revision number
# commit's status hook: the conditions (Gateway-API dicts) each object should have
ConditionsHook = Callable[[list[StoredObject]], Mapping[ObjectKey, Sequence[dict[str, Any]]]]


# -- row conversion -----------------------------------------------------------------------


def _object(m: RowMapping, sealer: Sealer) -> StoredObject:
    return StoredObject(
        kind=m["kind"],
        namespace=m["namespace"],
        name=m["name"],
        api_version=m["api_version"],
        labels=dict(m["labels"] or {}),
        annotations=dict(m["annotations"] or {}),
        spec=sealer.open_spec(m["kind"], m["namespace"], m["name"], m["spec"]),
        status=m["status"],
        resource_version=int(m["resource_version"]),
        generation=int(m["generation"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _object_values(obj: StoredObject, sealer: Sealer) -> dict[str, Any]:
    return {
        "kind": obj.kind,
        "namespace": obj.namespace,
        "name": obj.name,
        "api_version": obj.api_version,
        "labels": obj.labels,
        "annotations": obj.annotations,
        "spec": sealer.seal_spec(obj.kind, obj.namespace, obj.name, obj.spec),
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


_REVISION_COLUMNS = (
    t.revisions.c.number,
    t.revisions.c.created_at,
    t.revisions.c.actor,
    t.revisions.c.message,
    t.revisions.c.changes,
    t.revisions.c.rollback_of,
)


# -- the store ----------------------------------------------------------------------------


# -- the store ----------------------------------------------------------------------------


class Store(ProgressTable, AuditAndTokens, SealedRows, RemediationTables, ObservationsTable):
    """The persistent store; create it with ``engine.open_store``. Connections and
    transactions come from ``StoreBase``; audit, tokens and reconciler progress from the
    mixins; objects, revisions, commits and status are here."""

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
                return latest, await _objects(conn, self.sealer)

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
        return _object(row._mapping, self.sealer)

    async def commit(
        self,
        changes: list[Change],
        *,
        actor: str,
        message: str = "",
        validate: Callable[[list[StoredObject]], list[Any]] | None = None,
        conditions: ConditionsHook | None = None,
        dry_run: bool = False,
        action: str = "apply",
        remote: str = "",
        rollback_of: int | None = None,
    ) -> CommitResult:
        """Apply ``changes`` as one new revision (see the module doc).

        ``conditions``: called after ``validate`` with the same objects when the commit
        changes something; the conditions it returns per object are merged into their
        status in the same transaction (``Plan.set_conditions``).
        Raises ``Conflict``, ``NotFound``, ``Invalid`` (nothing written) or
        ``StoreUnavailable``. ``dry_run``: the same checks, nothing written, the result
        carries the revision number the commit would have had.
        """
        if dry_run:
            with self._guard():
                async with self._connection(self._snapshot_engine) as conn:
                    plan = await self._plan(conn, changes, validate, conditions)
            return self._result(plan)
        async with self._commit_lock:
            with self._guard():
                async with self._transaction() as conn:
                    if self._pg:
                        await conn.execute(select(func.pg_advisory_xact_lock(COMMIT_LOCK)))
                    plan = await self._plan(conn, changes, validate, conditions)
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
        conditions: ConditionsHook | None = None,
    ) -> Plan:
        latest = await _latest(conn)
        current = {o.key: o for o in await _objects(conn, self.sealer)}
        plan = Plan(revision=latest + 1, current=current, working=dict(current))
        plan.apply(changes, self._now())
        plan.finish()
        objects = plan.objects  # one list for both hooks (they may share their work)
        if validate is not None:
            problems = validate(objects)
            if problems:
                raise Invalid(problems)
        if conditions is not None and plan.changed:
            plan.set_conditions(conditions(objects), rfc3339(self._now()))
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
        now = self._now()
        for key in plan.deletes:
            await conn.execute(delete(t.objects).where(_key_clause(key)))
        inserts = [o for o in plan.upserts if o.key not in plan.current]
        updates = [o for o in plan.upserts if o.key in plan.current]
        if inserts:
            await conn.execute(insert(t.objects), [_object_values(o, self.sealer) for o in inserts])
        for obj in updates:
            values = _object_values(obj, self.sealer)
            for k in ("kind", "namespace", "name"):
                del values[k]
            await conn.execute(update(t.objects).where(_key_clause(obj.key)).values(values))
        for key, status in plan.statuses.items():
            await conn.execute(update(t.objects).where(_key_clause(key)).values(status=status))
        await conn.execute(
            insert(t.revisions).values(
                number=plan.revision,
                created_at=now,
                actor=actor,
                message=message,
                changes=plan.summary(),
                snapshot=[
                    self.sealer.seal_manifest(o.manifest(with_status=False)) for o in plan.objects
                ],
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
        manifests = row._mapping["snapshot"] or []
        return _revision(row._mapping), [self.sealer.open_manifest(dict(m)) for m in manifests]

    async def merge_conditions(
        self, kind: str, namespace: str, name: str, conditions: Sequence[dict[str, Any]]
    ) -> dict[str, Any]:
        """Merge ``conditions`` into an object's status by type (``plan.merged_status``),
        serialised with commits so neither loses the other's conditions; returns the new
        status. No revision, resource_version unchanged."""
        key = (kind, namespace, name)
        with self._guard():
            async with self._transaction() as conn:
                if self._pg:
                    await conn.execute(select(func.pg_advisory_xact_lock(COMMIT_LOCK)))
                row = (
                    await conn.execute(select(t.objects.c.status).where(_key_clause(key)))
                ).first()
                if row is None:
                    raise NotFound(f"{describe(*key)} not found")
                status = merged_status(row[0], conditions, rfc3339(self._now()))
                await conn.execute(update(t.objects).where(_key_clause(key)).values(status=status))
        return status

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


def _key_clause(key: ObjectKey) -> Any:
    kind, namespace, name = key
    return and_(
        t.objects.c.kind == kind, t.objects.c.namespace == namespace, t.objects.c.name == name
    )


async def _latest(conn: AsyncConnection) -> int:
    value = (await conn.execute(select(func.coalesce(func.max(t.revisions.c.number), 0)))).scalar()
    return int(value or 0)


async def _objects(conn: AsyncConnection, sealer: Sealer) -> list[StoredObject]:
    query = select(t.objects).order_by(t.objects.c.kind, t.objects.c.namespace, t.objects.c.name)
    return [_object(r._mapping, sealer) for r in (await conn.execute(query)).all()]


__all__ = [
    "COMMIT_LOCK",
    "DRIVER_ERRORS",
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
