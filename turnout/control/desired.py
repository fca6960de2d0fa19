"""``DesiredState``: what this replica serves, and the view the API reads.

It holds the objects of the latest store revision this replica has adopted (``stored``)
and the objects from ``serve -f`` files (``files``). ``desired()`` validates both
together, exactly what the data plane compiles, and keeps the problems per object for
status. The ``view`` is the union as the API shows it (a file object shadows a stored
one with the same key, reported once); every change of it, a stored status included, is
handed to ``on_events`` as watch events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from turnout.config.configset import ConfigSet
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.config.validate import validate
from turnout.control.objects import (
    API_SOURCE,
    CLUSTER_NAMESPACE,
    KIND_INFO,
    OWNER_ANNOTATION,
    describe_key,
    normalise,
    to_resource,
)
from turnout.control.store.records import ObjectKey, StoredObject
from turnout.control.watch import WatchEvent

log = logging.getLogger("turnout.control")


def store_key(res: Resource) -> ObjectKey:
    ns = res.obj.metadata.namespace if KIND_INFO[res.kind].namespaced else CLUSTER_NAMESPACE
    return (res.kind, ns, res.obj.metadata.name)


@dataclass(slots=True)
class Entry:
    """One object as this replica serves it."""

    key: ObjectKey
    manifest: dict[str, Any]  # with metadata (owner annotation, resourceVersion...), no status
    owner: str  # "api" or "file:PATH:LINE"
    resource_version: int  # 0 for file objects
    generation: int
    labels: dict[str, str]
    status: dict[str, Any] | None = None  # the stored status (None for file objects)


class DesiredState:
    def __init__(self, on_events: Callable[[list[WatchEvent]], None]) -> None:
        self.on_events = on_events
        self.store_revision = 0
        self.stored: dict[ObjectKey, StoredObject] = {}
        self.files: dict[ObjectKey, Resource] = {}
        self.view: dict[ObjectKey, Entry] = {}
        self.problems: dict[ObjectKey, list[Problem]] = {}
        self.view_revision = 0  # bumps on every view change
        self._shadowed_reported: set[ObjectKey] = set()

    def set_files(self, resources: list[Resource]) -> None:
        """Objects from ``serve -f`` files (or the embedded defaults); called on every load."""
        self.files = {store_key(r): r for r in resources}

    def set_stored(self, revision: int, objects: list[StoredObject]) -> None:
        self.stored = {o.key: o for o in objects}
        self.store_revision = revision
        self._shadowed_reported &= set(self.stored)

    def set_status(self, key: ObjectKey, status: dict[str, Any]) -> None:
        """A stored object's new status (written by a reconciler): no new revision."""
        obj = self.stored.get(key)
        if obj is None:
            return
        self.stored[key] = replace(obj, status=status)
        self.refresh_view()

    def desired(self) -> tuple[ConfigSet, list[Problem]]:
        """Files + stored objects, validated together: what the data plane compiles."""
        config, problems = validate(self.combined(self.stored.values()))
        self.problems = problems_by_key(config, problems)
        self.refresh_view()
        return config, problems

    def combined(self, stored: Iterable[StoredObject]) -> list[Resource]:
        resources = list(self.files.values())
        base = len(resources)
        for i, obj in enumerate(sorted(stored, key=lambda o: o.key)):
            if obj.key in self.files:
                if obj.key not in self._shadowed_reported:
                    self._shadowed_reported.add(obj.key)
                    res = self.files[obj.key]
                    log.warning(
                        "%s from the store is shadowed by the same object in %s:%s",
                        describe_key(*obj.key),
                        res.origin.source,
                        res.origin.line,
                    )
                continue
            # Status is the control plane's record, not configuration (a Secret has none).
            resources.append(to_resource(obj.manifest(with_status=False), base + i))
        return resources

    def file_owner(self, key: ObjectKey) -> str | None:
        res = self.files.get(key)
        return None if res is None else f"file:{res.origin.source}:{res.origin.line}"

    def refresh_view(self) -> None:
        view: dict[ObjectKey, Entry] = {}
        for key, res in self.files.items():
            manifest = normalise(res)
            owner = f"file:{res.origin.source}:{res.origin.line}"
            meta = manifest["metadata"]
            meta.setdefault("annotations", {})[OWNER_ANNOTATION] = owner
            meta["generation"] = 1
            view[key] = Entry(key, manifest, owner, 0, 1, dict(res.obj.metadata.labels))
        for key, obj in self.stored.items():
            if key in view:
                continue
            manifest = obj.manifest()
            manifest.pop("status", None)
            manifest["metadata"].setdefault("annotations", {})[OWNER_ANNOTATION] = API_SOURCE
            view[key] = Entry(
                key,
                manifest,
                API_SOURCE,
                obj.resource_version,
                obj.generation,
                dict(obj.labels),
                obj.status,
            )
        old, self.view = self.view, view
        events: list[WatchEvent] = []
        rev = self.store_revision
        for key, entry in view.items():
            before = old.get(key)
            if before is None:
                events.append(WatchEvent("ADDED", key, entry.manifest, rev))
            elif before.manifest != entry.manifest or before.status != entry.status:
                events.append(WatchEvent("MODIFIED", key, entry.manifest, rev))
        for key, entry in old.items():
            if key not in view:
                events.append(WatchEvent("DELETED", key, entry.manifest, rev))
        if events:
            self.view_revision += 1
            self.on_events(events)


def problems_by_key(config: ConfigSet, problems: list[Problem]) -> dict[ObjectKey, list[Problem]]:
    by_key: dict[ObjectKey, list[Problem]] = {}
    index = {r.ref: store_key(r) for r in config.resources}
    for p in problems:
        key = index.get(p.obj)
        if key is not None:
            by_key.setdefault(key, []).append(p)
    return by_key
