"""``Writes``: every change of objects, and the adoption of new store revisions.

Writes go through ``Store.commit``, which validates the *combined* desired state (files
+ stored, exactly what the data plane would compile) inside the store's transaction, so
a write that fails validation changes nothing and two replicas cannot interleave
revisions; the same transaction stores the ``Accepted`` and ``ResolvedRefs`` conditions
of every stored object whose conditions change (``gateway_status``). Objects from files
belong to their files: a write naming one is refused (``OwnedByFile``, 409) with the
file and line.

A revision reaches the data plane by one path whatever its origin: ``adopt`` (after a
local commit, or when the ``RevisionFeed`` reports a newer revision written by another
replica) swaps the stored objects, asks the supervisor to reload (``on_change``), and
tells ``on_adopted`` (the reconcile manager). ``Writes`` is also the manager's ``Host``:
reconcilers commit as ``system:<name>`` and write status through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from turnout.config.configset import ConfigSet
from turnout.config.kinds import ROUTING_KEY_KINDS
from turnout.config.model.environment import QUEUE_ANNOTATION
from turnout.config.model.release import STATE_ANNOTATION
from turnout.config.problems import Problem
from turnout.config.sandboxes import new_routing_key
from turnout.config.validate import validate
from turnout.control.auth import Principal, Role
from turnout.control.desired import DesiredState, problems_by_key
from turnout.control.gateway_status import stored_conditions
from turnout.control.objects import API_SOURCE, describe_key
from turnout.control.store.errors import NotFound
from turnout.control.store.records import (
    Change,
    CommitResult,
    ObjectKey,
    StoredObject,
)
from turnout.control.store.repository import Store

log = logging.getLogger("turnout.control")

KEYED_KINDS: Final = ROUTING_KEY_KINDS


class OwnedByFile(Exception):
    """A write named an object that a ``serve -f`` file defines."""


class Writes:
    def __init__(
        self,
        store: Store,
        state: DesiredState,
        on_change: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.store = store
        self.state = state
        self.on_change = on_change
        self.on_adopted: Callable[[], None] = lambda: None
        self._adopt_lock = asyncio.Lock()
        self._validated: tuple[list[StoredObject], tuple[ConfigSet, list[Problem]]] | None = None

    async def write(
        self,
        changes: list[Change],
        principal: Principal,
        *,
        message: str = "",
        dry_run: bool = False,
        action: str = "apply",
        remote: str = "",
        rollback_of: int | None = None,
    ) -> CommitResult:
        changes = [self._with_release_state(self._with_routing_key(ch)) for ch in changes]
        for ch in changes:
            owner = self.state.file_owner(ch.key)
            if owner is not None:
                where = owner.removeprefix("file:")
                raise OwnedByFile(
                    f"{describe_key(*ch.key)} is managed by file {where}; change the file instead"
                )
        result = await self.store.commit(
            changes,
            actor=principal.actor,
            message=message,
            validate=self._validation_errors,
            conditions=self._conditions,
            dry_run=dry_run,
            action=action,
            remote=remote,
            rollback_of=rollback_of,
        )
        if result.changed and not dry_run:
            await self.adopt(result.revision, result.objects, f"{action} by {principal.actor}")
        return result

    def _validate(self, objects: list[StoredObject]) -> tuple[ConfigSet, list[Problem]]:
        # The commit's two hooks see the same object list: validate it once.
        if self._validated is not None and self._validated[0] is objects:
            return self._validated[1]
        result = validate(self.state.combined(objects))
        self._validated = (objects, result)
        return result

    def _conditions(self, objects: list[StoredObject]) -> dict[ObjectKey, list[dict[str, Any]]]:
        config, problems = self._validate(objects)
        self._validated = None
        return stored_conditions(objects, problems_by_key(config, problems), self.state.files)

    def _validation_errors(self, objects: list[StoredObject]) -> list[Any]:
        _, problems = self._validate(objects)
        errors = []
        for p in problems:
            if p.severity != "error":
                continue
            if p.source == API_SOURCE and p.line == 0:
                p = Problem(p.source, None, None, p.path, p.message, p.obj, p.severity)
            errors.append(p)
        return errors

    def _with_routing_key(self, change: Change) -> Change:
        """A Sandbox or RouteGroup written without ``spec.routingKey`` keeps the key it
        has, or gets a new random one (written into the spec, so every replica and every
        later revision agrees on it)."""
        manifest = change.manifest
        if change.op != "put" or change.kind not in KEYED_KINDS or manifest is None:
            return change
        spec = manifest.get("spec")
        if not isinstance(spec, dict) or spec.get("routingKey"):
            return change
        known = self.state.stored.get(change.key)
        old = (
            known.spec.get("routingKey")
            if known is not None and isinstance(known.spec, dict)
            else None
        )
        key = old if isinstance(old, str) and old else new_routing_key()
        return replace(change, manifest={**manifest, "spec": {**spec, "routingKey": key}})

    def _with_release_state(self, change: Change) -> Change:
        """A Release re-applied without its state annotation (a user's manifest) keeps
        the stored state while its spec is unchanged: re-applying must not restart a
        release or move its traffic. A changed spec starts a new run anyway. An
        Environment re-applied keeps its queue's pause (``QUEUE_ANNOTATION``) likewise,
        whatever its spec: only the queue commands pause and resume it."""
        manifest = change.manifest
        kept_key = {"Release": STATE_ANNOTATION, "Environment": QUEUE_ANNOTATION}.get(change.kind)
        if change.op != "put" or kept_key is None or manifest is None:
            return change
        meta = manifest.get("metadata") or {}
        annotations = dict(meta.get("annotations") or {})
        known = self.state.stored.get(change.key)
        if kept_key in annotations or known is None:
            return change
        if change.kind == "Release" and known.spec != manifest.get("spec"):
            return change
        kept = known.annotations.get(kept_key)
        if kept is None:
            return change
        annotations[kept_key] = kept
        return replace(
            change, manifest={**manifest, "metadata": {**meta, "annotations": annotations}}
        )

    # -- adopting revisions --------------------------------------------------------------

    async def adopt(self, revision: int, objects: list[StoredObject], reason: str) -> None:
        async with self._adopt_lock:
            if revision <= self.state.store_revision:
                return
            self.state.set_stored(revision, objects)
            log.info("control plane: adopting store revision %d (%s)", revision, reason)
            await self.on_change(f"store revision {revision}")
            self.on_adopted()

    async def on_feed_revision(self, revision: int) -> None:
        if revision <= self.state.store_revision:
            return
        latest, objects = await self.store.load()
        await self.adopt(latest, objects, "from the store")

    # -- stored conditions after a files reload ------------------------------------------

    def conditions_drift(self) -> dict[ObjectKey, list[dict[str, Any]]]:
        """Stored objects whose stored ``Accepted``/``ResolvedRefs`` differ from what the
        current validation (``DesiredState.desired``) says, with the conditions they need."""
        want = stored_conditions(self.state.stored.values(), self.state.problems, self.state.files)
        drift = {}
        for key, conds in want.items():
            status = self.state.stored[key].status or {}
            have = {c.get("type"): c for c in status.get("conditions") or []}
            if any(_differs(have.get(c["type"]), c) for c in conds):
                drift[key] = conds
        return drift

    async def sync_conditions(self) -> None:
        """Store the conditions a files reload changed (the leader does it; commits store
        them otherwise). Converges: every adopted revision runs it again."""
        for key, conds in self.conditions_drift().items():
            try:
                status = await self.store.merge_conditions(*key, conds)
            except NotFound:  # deleted meanwhile
                continue
            self.state.set_status(key, status)

    # -- the reconcile manager's host ----------------------------------------------------

    def objects(self) -> Mapping[ObjectKey, StoredObject]:
        return self.state.stored

    async def commit_as(
        self, actor: str, changes: list[Change], *, message: str, action: str
    ) -> None:
        system = Principal("system", actor, Role.ADMIN, (), via="system")
        await self.write(changes, system, message=message, action=action)

    async def write_conditions(self, key: ObjectKey, conditions: Sequence[dict[str, Any]]) -> None:
        status = await self.store.merge_conditions(*key, conditions)
        self.state.set_status(key, status)


def _differs(have: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    return have is None or any(have.get(k) != v for k, v in want.items())
