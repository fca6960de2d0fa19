"""An in-memory control plane for reconciler tests: objects, commits, status, progress.

``MemoryControl`` is both the manager's ``Host`` and its ``ProgressStore``. ``put`` and
``delete`` behave like ``Store.commit`` as far as reconcilers can tell (resource_version
= a new revision number, generation bumps on a spec change, ``expect_version`` checked);
each write tells the manager (``observe``), as the real control plane does on adopt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from turnout.control.reconcile import ReconcileManager
from turnout.control.store.errors import Conflict
from turnout.control.store.plan import merged_status
from turnout.control.store.records import Change, ObjectKey, Progress, StoredObject, rfc3339
from turnout.testing.clock import FakeClock


class MemoryControl:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.stored: dict[ObjectKey, StoredObject] = {}
        self.saved: dict[tuple[str, ObjectKey], Progress] = {}
        self.revision = 0
        self.commits: list[tuple[str, str, list[Change]]] = []  # (actor, action, changes)
        self.status_writes = 0
        self.manager: ReconcileManager | None = None

    # -- Host ------------------------------------------------------------------------------

    def objects(self) -> dict[ObjectKey, StoredObject]:
        return self.stored

    async def commit_as(
        self, actor: str, changes: list[Change], *, message: str, action: str
    ) -> None:
        for ch in changes:
            obj = self.stored.get(ch.key)
            if ch.expect_version is not None and (
                obj is None or obj.resource_version != ch.expect_version
            ):
                raise Conflict(f"{ch.key} changed meanwhile")
            if ch.must_exist is False and obj is not None:
                raise Conflict(f"{ch.key} exists already")
        self.commits.append((f"system:{actor}", action, changes))
        for ch in changes:
            if ch.op == "delete":
                self.delete(*ch.key)
            else:
                assert ch.manifest is not None
                meta = ch.manifest.get("metadata") or {}
                self.put(
                    ch.kind,
                    ch.name,
                    ch.manifest.get("spec"),
                    namespace=ch.namespace,
                    annotations=dict(meta.get("annotations") or {}),
                )

    async def write_conditions(self, key: ObjectKey, conditions: Sequence[dict[str, Any]]) -> None:
        self.status_writes += 1
        obj = self.stored[key]
        when = rfc3339(datetime.fromtimestamp(self.clock.time(), UTC))
        self.stored[key] = replace(obj, status=merged_status(obj.status, conditions, when))

    # -- ProgressStore ---------------------------------------------------------------------

    async def progress(self, reconciler: str) -> list[Progress]:
        return sorted((p for (r, _), p in self.saved.items() if r == reconciler), key=_key)

    async def save_progress(self, rec: Progress) -> None:
        self.saved[(rec.reconciler, rec.key)] = rec

    async def drop_progress(self, reconciler: str, key: ObjectKey) -> None:
        self.saved.pop((reconciler, key), None)

    # -- what a test does ------------------------------------------------------------------

    def put(
        self,
        kind: str,
        name: str,
        spec: Any,
        *,
        namespace: str = "default",
        annotations: dict[str, str] | None = None,
        **labels: str,
    ) -> StoredObject:
        key = (kind, namespace, name)
        old = self.stored.get(key)
        self.revision += 1
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        obj = StoredObject(
            kind=kind,
            namespace=namespace,
            name=name,
            api_version="turnout.dev/v1alpha1",
            labels=dict(labels),
            annotations=dict(annotations or {}),
            spec=spec,
            status=old.status if old is not None else None,
            resource_version=self.revision,
            generation=1 if old is None else old.generation + (old.spec != spec),
            created_at=old.created_at if old is not None else now,
            updated_at=now,
        )
        self.stored[key] = obj
        self._changed()
        return obj

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.revision += 1
        del self.stored[(kind, namespace, name)]
        self._changed()

    def _changed(self) -> None:
        if self.manager is not None:
            self.manager.observe()


def _key(p: Progress) -> ObjectKey:
    return p.key
