"""``Accepted`` and ``ResolvedRefs``: Gateway-API conditions derived from validation problems.

A problem under ``spec.parentRefs`` means the object is not accepted by its parent;
a problem naming ``backendRefs`` or a Sandbox's ``overrides`` means a reference does not
resolve. ``Writes`` stores these conditions with every commit (for every stored object
whose conditions changed, in the commit's transaction) and, on the leader, after a files
reload changed them (``Writes.sync_conditions``); ``StatusRenderer`` computes them at
read only for objects from files and for stored objects that have none yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from turnout.config.problems import Problem
from turnout.control.store.records import ObjectKey, StoredObject


class GatewayCondition(NamedTuple):
    type: str
    ok: bool
    reason: str  # when not ok; an ok condition's reason is its type
    message: str


def problem_conditions(problems: list[Problem]) -> list[GatewayCondition]:
    attach = [p for p in problems if p.path.startswith("spec.parentRefs")]
    refs = [p for p in problems if "backendRefs" in p.path or "overrides" in p.path]
    return [
        GatewayCondition(
            "Accepted",
            not attach,
            "NotAllowedByListeners",
            "; ".join(p.message for p in attach) or "accepted",
        ),
        GatewayCondition(
            "ResolvedRefs",
            not refs,
            "BackendNotFound",
            "; ".join(p.message for p in refs) or "all references resolved",
        ),
    ]


def as_dict(cond: GatewayCondition, generation: int) -> dict[str, Any]:
    """The stored form (``lastTransitionTime`` is added when merged into a status)."""
    return {
        "type": cond.type,
        "status": "True" if cond.ok else "False",
        "reason": cond.type if cond.ok else cond.reason,
        "message": cond.message,
        "observedGeneration": generation,
    }


def stored_conditions(
    objects: Iterable[StoredObject],
    problems: dict[ObjectKey, list[Problem]],
    shadowed: Iterable[ObjectKey],
) -> dict[ObjectKey, list[dict[str, Any]]]:
    """The conditions each stored object should carry (objects shadowed by a file object
    are left alone: they are not what the gateway runs)."""
    skip = set(shadowed)
    return {
        o.key: [as_dict(c, o.generation) for c in problem_conditions(problems.get(o.key, []))]
        for o in objects
        if o.key not in skip
    }
