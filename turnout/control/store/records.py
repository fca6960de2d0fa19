"""The store's value types: objects, changes, commit results, revisions, audit, tokens.

Plain frozen dataclasses with no SQL: the repository reads and writes them, the planning
logic (``plan``) computes them, the control plane and the API hand them around.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from turnout.config.kinds import top_level_content

ObjectKey = tuple[str, str, str]  # (kind, namespace, name); namespace "" = cluster-scoped

# Kinds whose content sits beside metadata rather than under "spec" (stored as the spec).
TOP_LEVEL_CONTENT: dict[str, tuple[str, ...]] = top_level_content()


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


@dataclass(frozen=True, slots=True)
class Progress:
    """One reconciler's progress on one object (the ``reconciler_progress`` row)."""

    reconciler: str
    key: ObjectKey
    observed_version: int  # the resource_version it last reconciled
    requeue_at: float | None  # wall-clock seconds when it runs again; None: on change only
    failures: int = 0  # errors in a row (0 after a success)
    last_error: str = ""
