"""``Store``: objects, numbered revisions, audit records and API tokens (async).

Every write of objects goes through ``Store.commit``, one transaction serialised across
processes (PostgreSQL: ``pg_advisory_xact_lock(COMMIT_LOCK)``; SQLite: ``BEGIN
IMMEDIATE``) and, within a process, by an ``asyncio.Lock`` so that waiting commits do not
hold pooled connections. Inside it the store reads the current objects and the latest
revision, applies the changes in order to an in-memory copy (``_Plan``), hands the whole
resulting object list to the caller's ``validate`` callback, and only then writes: the
changed object rows (``resource_version`` = the new revision number), one ``revisions``
row (number = latest + 1, a snapshot of every manifest, a summary of the changes), one
``audit`` row with a YAML diff, and on PostgreSQL a ``pg_notify`` that ``RevisionFeed``s
in other processes receive when the transaction commits. Because the revision number is
computed under the lock and is the primary key, revision numbers have no gaps and no
duplicates. A put whose normalised content (apiVersion, labels, annotations, spec) equals
the stored one is "unchanged"; if nothing changes no revision is written.

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
import copy
import dataclasses
import difflib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import yaml
from sqlalchemy import RowMapping, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from turnout.config.kinds import top_level_content
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

log = logging.getLogger("turnout.control.store")
DRIVER_ERRORS: Final = driver_errors()

ObjectKey = tuple[str, str, str]  # (kind, namespace, name); namespace "" = cluster-scoped

COMMIT_LOCK: Final = 0x7475726E6F7574 + 1  # advisory-lock key serialising commits
REVISIONS_CHANNEL: Final = "turnout_revisions"  # NOTIFY channel, payload = revision number
SQLITE_IMMEDIATE: Final = "turnout_sqlite_immediate"  # see engine._sqlite_engine
TOUCH_INTERVAL: Final = 60.0  # seconds between last_used_at updates of one token


def describe(kind: str, namespace: str, name: str) -> str:
    """``"HTTPRoute default/shop"``, or ``"GatewayClass turnout"`` when cluster-scoped."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def rfc3339(when: datetime) -> str:
    if when.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- value types --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredObject:
    kind: str
    namespace: str
    name: str
    api_version: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: Any  # the manifest's "spec" (a JSON value), None when absent
    status: dict[str, Any] | None
    resource_version: int  # the revision number that last changed this object
    generation: int  # 1 on create, +1 whenever spec changes
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.namespace, self.name)

    def manifest(self, *, with_status: bool = True) -> dict[str, Any]:
        """The object as a Kubernetes-style manifest (a fresh copy, safe to change)."""
        meta: dict[str, Any] = {"name": self.name}
        if self.namespace:
            meta["namespace"] = self.namespace
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        meta["resourceVersion"] = str(self.resource_version)
        meta["generation"] = self.generation
        meta["creationTimestamp"] = rfc3339(self.created_at)
        out: dict[str, Any] = {"apiVersion": self.api_version, "kind": self.kind}
        out["metadata"] = meta
        if self.kind in TOP_LEVEL_CONTENT and isinstance(self.spec, dict):
            out.update(copy.deepcopy(self.spec))
        elif self.spec is not None:
            out["spec"] = copy.deepcopy(self.spec)
        if with_status and self.status is not None:
            out["status"] = copy.deepcopy(self.status)
        return out


@dataclass(frozen=True, slots=True)
class Change:
    op: Literal["put", "delete"]  # put = create or replace
    kind: str
    namespace: str
    name: str
    # For put: apiVersion, metadata.labels/annotations and spec are taken; kind, name and
    # namespace come from the fields above; resourceVersion, generation,
    # creationTimestamp, uid and status are ignored.
    manifest: dict[str, Any] | None
    expect_version: int | None = None  # must equal the current resource_version
    must_exist: bool | None = None  # True: NotFound if absent; False: Conflict if present

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ChangeResult:
    kind: str
    namespace: str
    name: str
    # "unchanged" for a delete means the object did not exist (and must_exist was not True).
    action: Literal["created", "configured", "unchanged", "deleted"]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class CommitResult:
    revision: int  # the new revision, or the current one when nothing changed
    results: list[ChangeResult]
    objects: list[StoredObject]  # every object after the commit, sorted by key
    changed: bool


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    number: int
    created_at: datetime
    actor: str
    message: str
    changes: list[dict[str, str]]  # [{"action", "kind", "namespace", "name"}]
    rollback_of: int | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    time: datetime
    actor: str
    action: str
    result: str
    target: str
    revision: int | None
    message: str
    diff: str
    remote: str


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    role: str
    namespaces: list[str]
    secret_hash: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


# -- manifests and plans ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Content:
    """What a put may change; equal content means "unchanged"."""

    api_version: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: Any

    @classmethod
    def of_manifest(cls, manifest: dict[str, Any]) -> _Content:
        meta = manifest.get("metadata") or {}
        fields = TOP_LEVEL_CONTENT.get(str(manifest.get("kind")))
        if fields is not None:
            spec: Any = {f: copy.deepcopy(manifest[f]) for f in fields if f in manifest}
        else:
            spec = copy.deepcopy(manifest.get("spec"))
        return cls(
            api_version=str(manifest.get("apiVersion") or ""),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            spec=spec,
        )

    @classmethod
    def of_object(cls, obj: StoredObject) -> _Content:
        return cls(obj.api_version, obj.labels, obj.annotations, obj.spec)

    def same_as(self, other: _Content) -> bool:
        # Canonical JSON: key order never matters (JSONB reorders keys), and 1 ≠ true.
        return _canonical(self.as_tuple()) == _canonical(other.as_tuple())

    def same_spec(self, other: _Content) -> bool:
        return _canonical(self.spec) == _canonical(other.spec)

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.api_version, self.labels, self.annotations, self.spec)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def manifest_key(manifest: dict[str, Any]) -> ObjectKey:
    meta = manifest.get("metadata") or {}
    return (str(manifest.get("kind") or ""), str(meta.get("namespace") or ""), str(meta["name"]))


REDACTED = "(redacted)"
# Kinds whose content sits beside metadata rather than under "spec" (stored as the spec).
TOP_LEVEL_CONTENT: dict[str, tuple[str, ...]] = top_level_content()


def redacted(manifest: dict[str, Any]) -> dict[str, Any]:
    """A Secret with its values hidden: Secrets are write-only through the API, and their
    values never reach diffs, revisions, watch streams or the audit log."""
    if manifest.get("kind") != "Secret":
        return manifest
    out = dict(manifest)
    for part in ("data", "stringData"):
        values = out.get(part)
        if isinstance(values, dict):
            out[part] = dict.fromkeys(values, REDACTED)
    return out


def _diffable(manifest: dict[str, Any] | None) -> str:
    if manifest is None:
        return ""
    out = {k: v for k, v in redacted(manifest).items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for k in ("resourceVersion", "generation", "creationTimestamp", "uid"):
        meta.pop(k, None)
    out["metadata"] = meta
    return yaml.safe_dump(out, sort_keys=True, default_flow_style=False, allow_unicode=True)


def _unified_diff(
    key: ObjectKey, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> str:
    label = describe(*key)
    lines = difflib.unified_diff(
        _diffable(before).splitlines(keepends=True),
        _diffable(after).splitlines(keepends=True),
        fromfile=f"{label} (before)" if before is not None else "/dev/null",
        tofile=f"{label} (after)" if after is not None else "/dev/null",
    )
    return "".join(lines)


@dataclass
class _Plan:
    """The outcome of applying changes to the current objects, before anything is written."""

    revision: int  # the number the new revision would get
    current: dict[ObjectKey, StoredObject]
    working: dict[ObjectKey, StoredObject]
    results: list[ChangeResult] = field(default_factory=list)
    upserts: list[StoredObject] = field(default_factory=list)
    deletes: list[ObjectKey] = field(default_factory=list)
    touched: list[ObjectKey] = field(default_factory=list)  # upserted or deleted keys

    def apply(self, changes: Sequence[Change], now: datetime) -> None:
        for change in changes:
            self.results.append(self._apply_one(change, now))

    def _apply_one(self, change: Change, now: datetime) -> ChangeResult:
        key = change.key
        label = describe(*key)
        existing = self.working.get(key)
        if change.must_exist is True and existing is None:
            raise NotFound(f"{label} not found")
        if change.must_exist is False and existing is not None:
            raise Conflict(f"{label} already exists")
        if change.expect_version is not None:
            if existing is None:
                raise Conflict(
                    f"{label} does not exist (expected resourceVersion {change.expect_version})"
                )
            if existing.resource_version != change.expect_version:
                raise Conflict(
                    f"{label} has resourceVersion {existing.resource_version}, not "
                    f"{change.expect_version}: it was changed meanwhile; reload and retry"
                )
        before = existing.manifest() if existing is not None else None
        if change.op == "delete":
            if existing is None:
                return ChangeResult(*key, "unchanged", None, None)
            del self.working[key]
            return ChangeResult(*key, "deleted", before, None)
        if change.op != "put":
            raise ValueError(f"unknown change op {change.op!r}")
        if change.manifest is None:
            raise ValueError(f"put of {label} without a manifest")
        content = _Content.of_manifest(change.manifest)
        if existing is not None and content.same_as(_Content.of_object(existing)):
            return ChangeResult(*key, "unchanged", before, before)
        if existing is None:
            generation, created_at, status = 1, now, None
        else:
            bump = 0 if content.same_spec(_Content.of_object(existing)) else 1
            generation = existing.generation + bump
            created_at, status = existing.created_at, existing.status
        obj = StoredObject(
            kind=key[0],
            namespace=key[1],
            name=key[2],
            api_version=content.api_version,
            labels=content.labels,
            annotations=content.annotations,
            spec=content.spec,
            status=status,
            resource_version=self.revision,
            generation=generation,
            created_at=created_at,
            updated_at=now,
        )
        self.working[key] = obj
        action: Literal["created", "configured"] = "created" if existing is None else "configured"
        return ChangeResult(*key, action, before, obj.manifest())

    def finish(self) -> None:
        """Settle what to write: ``upserts`` and ``deletes`` (both sorted by key)."""
        for key, obj in list(self.working.items()):
            orig = self.current.get(key)
            # changed and changed back within one commit is no change at all
            if (
                orig is not None
                and obj is not orig
                and _Content.of_object(obj).same_as(_Content.of_object(orig))
            ):
                self.working[key] = orig
        self.upserts = [o for k, o in sorted(self.working.items()) if self.current.get(k) is not o]
        self.deletes = sorted(k for k in self.current if k not in self.working)
        self.touched = sorted({o.key for o in self.upserts} | set(self.deletes))

    @property
    def changed(self) -> bool:
        return bool(self.touched)

    @property
    def objects(self) -> list[StoredObject]:
        return [o for _, o in sorted(self.working.items())]

    def summary(self) -> list[dict[str, str]]:
        out = []
        for key in self.touched:
            if key not in self.working:
                action = "deleted"
            elif key in self.current:
                action = "configured"
            else:
                action = "created"
            kind, namespace, name = key
            out.append({"action": action, "kind": kind, "namespace": namespace, "name": name})
        return out

    def diff(self) -> str:
        parts = []
        for key in self.touched:
            before = self.current.get(key)
            after = self.working.get(key)
            parts.append(
                _unified_diff(
                    key,
                    before.manifest() if before is not None else None,
                    after.manifest() if after is not None else None,
                )
            )
        return "".join(parts)

    def target(self) -> str:
        keys = self.touched
        return describe(*keys[0]) if len(keys) == 1 else f"{len(keys)} objects"


def changes_to_reach(
    current: list[StoredObject], target_manifests: list[dict[str, Any]]
) -> list[Change]:
    """The changes that make ``current`` equal to ``target_manifests`` (e.g. a snapshot).

    Deletes come first, then puts, each sorted by key. Every change names the current
    ``resource_version`` it expects (or ``must_exist=False`` for a create), so committing
    them after someone else changed the same objects raises ``Conflict`` instead of
    overwriting that change. Objects whose content is already equal are left out; an
    empty list means there is nothing to do.
    """
    have = {o.key: o for o in current}
    want: dict[ObjectKey, dict[str, Any]] = {}
    for manifest in target_manifests:
        want[manifest_key(manifest)] = manifest
    changes: list[Change] = []
    for key in sorted(have.keys() - want.keys()):
        obj = have[key]
        changes.append(
            Change("delete", *key, None, expect_version=obj.resource_version, must_exist=True)
        )
    for key in sorted(want):
        manifest = want[key]
        existing = have.get(key)
        if existing is None:
            changes.append(Change("put", *key, manifest, must_exist=False))
        elif not _Content.of_manifest(manifest).same_as(_Content.of_object(existing)):
            changes.append(
                Change(
                    "put", *key, manifest, expect_version=existing.resource_version, must_exist=True
                )
            )
    return changes


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
    ) -> _Plan:
        latest = await _latest(conn)
        current = {o.key: o for o in await _objects(conn)}
        plan = _Plan(revision=latest + 1, current=current, working=dict(current))
        plan.apply(changes, datetime.now(UTC))
        plan.finish()
        if validate is not None:
            problems = validate(plan.objects)
            if problems:
                raise Invalid(problems)
        return plan

    @staticmethod
    def _result(plan: _Plan) -> CommitResult:
        if not plan.changed:
            return CommitResult(plan.revision - 1, plan.results, plan.objects, False)
        return CommitResult(plan.revision, plan.results, plan.objects, True)

    async def _write_plan(
        self,
        conn: AsyncConnection,
        plan: _Plan,
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
    "AuditEntry",
    "Change",
    "ChangeResult",
    "CommitResult",
    "ObjectKey",
    "RevisionInfo",
    "Store",
    "StoredObject",
    "TokenRecord",
    "changes_to_reach",
    "describe",
]
