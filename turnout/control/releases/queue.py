"""Release queues per Environment, computed from the stored objects (pure functions).

Nothing about a queue is stored beside the objects themselves: a release's place comes
from its own state annotation (``Pending`` with ``queued_at``, written when the
reconciler first sees it; ``bypass``), its ``spec.priority`` and ``spec.schedule``; the
queue's pause from the Environment's ``QUEUE_ANNOTATION``. So the queue survives a
restart and a leader change unchanged, and whichever replica leads computes the same
order. Order: bypassed first, then higher ``priority``, then first queued, then name.

``decide`` says whether a ``Pending`` release may start now and, if not, why and when
to look again: not before every release it ``dependsOn`` (a release train) is
``Promoted``; not before its schedule; not while its environment's queue is paused or
in a blackout (unless bypassed); not while another release of the same Backend is live
or queued ahead of it (one live release per released Backend, even when bypassed: two
would fight over the same traffic). ``hold`` says whether a live release holds at its
step (a blackout, unless bypassed); ``failed_dependency`` whether a train's release
must abort because one it depends on failed. ``view`` is the queue as the API serves it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from turnout.config.model.environment import QUEUE_ANNOTATION, EnvironmentSpec
from turnout.config.model.release import ReleaseSpec
from turnout.control.releases.state import (
    ABORTED,
    DEGRADED,
    LIVE,
    PENDING,
    PROMOTED,
    ReleaseState,
)
from turnout.control.releases.windows import blackout, earliest_start
from turnout.control.store.records import ObjectKey, StoredObject

# How often a waiting release looks again (a release ahead of it may have settled).
POLL: Final = 1.0


@dataclass(frozen=True, slots=True)
class Env:
    name: str
    spec: EnvironmentSpec
    paused: dict[str, Any] | None  # {"by", "reason", "at"} when the queue is paused


@dataclass(frozen=True, slots=True)
class Entry:
    obj: StoredObject
    spec: ReleaseSpec
    state: ReleaseState  # Pending with generation 0 when none was written yet

    @property
    def backend(self) -> tuple[str, str]:
        return (self.obj.namespace, self.spec.backend)

    @property
    def queued_at(self) -> float:
        return self.state.queued_at or self.obj.updated_at.timestamp()

    def order(self) -> tuple[bool, int, float, str, str]:
        return (
            not self.state.bypass,
            -self.spec.priority,
            self.queued_at,
            self.obj.namespace,
            self.obj.name,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    start: bool
    reason: str = ""  # why it waits
    position: int = 0  # 1-based place in its environment's queue (0: not in one)
    environment: str | None = None
    recheck: float | None = None  # when to look again


def state_of(obj: StoredObject) -> ReleaseState:
    """The persisted state of this spec generation; ``Pending`` when there is none."""
    found = ReleaseState.from_annotations(obj.annotations)
    if found is None or found.generation != obj.generation:
        return ReleaseState(phase=PENDING, generation=0)
    return found


def queue_pause(annotations: Mapping[str, str]) -> dict[str, Any] | None:
    raw = annotations.get(QUEUE_ANNOTATION)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("paused") else None


def environments(objects: Mapping[ObjectKey, StoredObject]) -> dict[str, Env]:
    out = {}
    for key, obj in sorted(objects.items()):
        if key[0] != "Environment":
            continue
        try:
            spec = EnvironmentSpec.model_validate(obj.spec)
        except ValidationError:
            continue  # validation reports it on the object
        out[obj.name] = Env(obj.name, spec, queue_pause(obj.annotations))
    return out


def environment_of(namespace: str, envs: Mapping[str, Env]) -> Env | None:
    """The environment listing ``namespace`` (the first by name if several do)."""
    for env in envs.values():
        if namespace in env.spec.namespaces:
            return env
    return None


def entries(objects: Mapping[ObjectKey, StoredObject], env: Env) -> list[Entry]:
    """The environment's Releases (those whose spec validates)."""
    out = []
    for key, obj in objects.items():
        if key[0] != "Release" or obj.namespace not in env.spec.namespaces:
            continue
        try:
            spec = ReleaseSpec.model_validate(obj.spec)
        except ValidationError:
            continue
        out.append(Entry(obj, spec, state_of(obj)))
    return out


def queued(all_entries: Iterable[Entry]) -> list[Entry]:
    return sorted((e for e in all_entries if e.state.phase == PENDING), key=Entry.order)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def dependencies(
    obj: StoredObject, spec: ReleaseSpec, objects: Mapping[ObjectKey, StoredObject]
) -> list[tuple[str, str | None]]:
    """(``namespace/name``, its phase or None when absent) per ``dependsOn`` entry."""
    out = []
    for ref in spec.depends_on:
        ns, _, name = ref.rpartition("/")
        key = ("Release", ns or obj.namespace, name)
        dep = objects.get(key)
        out.append((f"{key[1]}/{key[2]}", None if dep is None else state_of(dep).phase))
    return out


def failed_dependency(
    obj: StoredObject, spec: ReleaseSpec, objects: Mapping[ObjectKey, StoredObject]
) -> str | None:
    """Why this release of a train must abort: a release it depends on failed."""
    for ref, phase in dependencies(obj, spec, objects):
        if phase in (ABORTED, DEGRADED):
            return f"aborted: release {ref}, which this one depends on, is {phase}"
    return None


def decide(
    obj: StoredObject,
    spec: ReleaseSpec,
    state: ReleaseState,
    objects: Mapping[ObjectKey, StoredObject],
    now: float,
) -> Decision:
    """May this ``Pending`` release start now?"""
    for ref, phase in dependencies(obj, spec, objects):
        if phase != PROMOTED:  # a train's order holds even for a bypass
            env = environment_of(obj.namespace, environments(objects))
            return Decision(
                False,
                f"waiting for release {ref} ({phase or 'not found'})",
                environment=None if env is None else env.name,
                recheck=now + POLL,
            )
    starts_at = earliest_start(spec.schedule, state.queued_at or now)
    env = environment_of(obj.namespace, environments(objects))
    if env is None:
        if now < starts_at and not state.bypass:
            return Decision(False, f"scheduled for {_when(starts_at)}", recheck=starts_at)
        return Decision(True)
    mine = Entry(obj, spec, state)
    all_entries = [e for e in entries(objects, env) if e.obj.key != obj.key] + [mine]
    line = queued(all_entries)
    position = next(i for i, e in enumerate(line, 1) if e.obj.key == obj.key)

    def wait(reason: str, recheck: float) -> Decision:
        return Decision(False, f"queued in {env.name}: {reason}", position, env.name, recheck)

    if not state.bypass:
        if now < starts_at:
            return wait(f"scheduled for {_when(starts_at)}", starts_at)
        if env.paused is not None:
            who = env.paused.get("by", "")
            why = env.paused.get("reason", "")
            return wait(f"queue paused by {who}" + (f": {why}" if why else ""), now + POLL)
        closed = blackout(env.spec, now)
        if closed is not None:
            return wait(closed.describe(), min(closed.until, now + 60.0))
    for other in all_entries:
        if other is not mine and other.backend == mine.backend and other.state.phase in LIVE:
            return wait(
                f"{other.obj.namespace}/{other.obj.name} is {other.state.phase} "
                f"on backend {spec.backend}",
                now + POLL,
            )
    for other in line:
        if other is mine:
            break
        if other.backend == mine.backend:
            return wait(
                f"behind {other.obj.namespace}/{other.obj.name} (priority "
                f"{other.spec.priority}) on backend {spec.backend}",
                now + POLL,
            )
    return Decision(True, position=position, environment=env.name)


def hold(
    obj: StoredObject, state: ReleaseState, objects: Mapping[ObjectKey, StoredObject], now: float
) -> tuple[str, float] | None:
    """(why, until) when a live release must hold at its step: a blackout, unbypassed."""
    if state.bypass:
        return None
    env = environment_of(obj.namespace, environments(objects))
    if env is None:
        return None
    closed = blackout(env.spec, now)
    if closed is None:
        return None
    return f"holding at step {state.step}: {env.name} {closed.describe()}", closed.until


def view(env: Env, objects: Mapping[ObjectKey, StoredObject], now: float) -> dict[str, Any]:
    """The queue as ``GET /api/v1/release-queues/{env}`` serves it (docs/releases.md)."""
    all_entries = entries(objects, env)
    closed = blackout(env.spec, now)
    active = [
        {
            "namespace": e.obj.namespace,
            "name": e.obj.name,
            "backend": e.spec.backend,
            "phase": e.state.phase,
            "step": e.state.step,
            "weight": e.state.weight,
            "bypass": e.state.bypass,
        }
        for e in sorted(all_entries, key=lambda e: (e.obj.namespace, e.obj.name))
        if e.state.phase in LIVE
    ]
    waiting = []
    for i, e in enumerate(queued(all_entries), 1):
        decided = decide(e.obj, e.spec, e.state, objects, now)
        waiting.append(
            {
                "position": i,
                "namespace": e.obj.namespace,
                "name": e.obj.name,
                "backend": e.spec.backend,
                "priority": e.spec.priority,
                "queuedAt": e.queued_at,
                "startsAt": earliest_start(e.spec.schedule, e.queued_at),
                "bypass": e.state.bypass,
                "waiting": decided.reason if not decided.start else "starting",
            }
        )
    return {
        "environment": env.name,
        "namespaces": list(env.spec.namespaces),
        "next": env.spec.next,
        "paused": env.paused,
        "blackout": None if closed is None else {"name": closed.name, "until": closed.until},
        "active": active,
        "queued": waiting,
    }
