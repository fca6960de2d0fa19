"""What a commit changes, computed without SQL: the store's pure planning logic.

``Plan`` applies a list of ``Change``s, in order, to an in-memory copy of the current
objects: preconditions (``must_exist``, ``expect_version``), "unchanged" detection on
normalised content (canonical JSON, so key order never matters), generation bumps on spec
changes, the new revision's number for every changed row, then ``finish`` settles the rows
to write; ``summary``, ``diff`` (redacted YAML) and ``target`` describe the revision and
its audit record. The repository runs a ``Plan`` inside its commit transaction and hands
``Plan.objects`` to the caller's validation hook before writing anything.
``changes_to_reach`` is the planning side of a rollback.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import yaml

from turnout.control.store.errors import Conflict, NotFound
from turnout.control.store.records import (
    TOP_LEVEL_CONTENT,
    Change,
    ChangeResult,
    ObjectKey,
    StoredObject,
    describe,
)


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
class Plan:
    """The outcome of applying changes to the current objects, before anything is written."""

    revision: int  # the number the new revision would get
    current: dict[ObjectKey, StoredObject]
    working: dict[ObjectKey, StoredObject]
    results: list[ChangeResult] = field(default_factory=list)
    upserts: list[StoredObject] = field(default_factory=list)
    deletes: list[ObjectKey] = field(default_factory=list)
    touched: list[ObjectKey] = field(default_factory=list)  # upserted or deleted keys
    statuses: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)  # status-only

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

    def set_conditions(
        self, conditions: Mapping[ObjectKey, Sequence[dict[str, Any]]], when: str
    ) -> None:
        """Merge ``conditions`` into the status of the objects after the commit (call
        after ``finish``). An object the commit does not otherwise change gets a
        status-only update (``statuses``): no new content, resource_version unchanged."""
        upserted = {o.key: i for i, o in enumerate(self.upserts)}
        for key, conds in conditions.items():
            obj = self.working.get(key)
            if obj is None:
                continue
            status = merged_status(obj.status, conds, when)
            if status == (obj.status or {}):
                continue
            obj = dataclasses.replace(obj, status=status)
            self.working[key] = obj
            i = upserted.get(key)
            if i is None:
                self.statuses[key] = status
            else:
                self.upserts[i] = obj

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


def merged_status(
    status: dict[str, Any] | None, conditions: Sequence[dict[str, Any]], when: str
) -> dict[str, Any]:
    """``status`` with ``conditions`` replacing those of the same ``type`` (others kept).
    A condition's ``lastTransitionTime`` stays while its ``status`` stays, else ``when``."""
    out = copy.deepcopy(status) if status else {}
    current: list[dict[str, Any]] = list(out.get("conditions") or [])
    index = {c.get("type"): i for i, c in enumerate(current)}
    for cond in conditions:
        i = index.get(cond["type"])
        before = current[i] if i is not None else None
        same = before is not None and before.get("status") == cond["status"]
        since = before.get("lastTransitionTime") if same and before is not None else None
        item = {**cond, "lastTransitionTime": since or when}
        if i is None:
            index[cond["type"]] = len(current)
            current.append(item)
        else:
            current[i] = item
    out["conditions"] = current
    return out


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
