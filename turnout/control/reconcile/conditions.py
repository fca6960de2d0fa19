"""Merging conditions into an object's ``status`` the way the Gateway API writes them.

Each condition carries the ``observedGeneration`` it was computed for and a
``lastTransitionTime`` that moves only when its ``status`` flips. Conditions of other
types (another reconciler's) are kept as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from turnout.control.reconcile.base import Condition
from turnout.control.store.records import rfc3339


def merge_conditions(
    status: dict[str, Any] | None,
    conditions: Sequence[Condition],
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """A new status: ``status`` with ``conditions`` replacing those of the same type."""
    out = copy.deepcopy(status) if status else {}
    current: list[dict[str, Any]] = list(out.get("conditions") or [])
    by_type = {c.get("type"): i for i, c in enumerate(current)}
    for cond in conditions:
        value = "True" if cond.status else "False"
        i = by_type.get(cond.type)
        before = current[i] if i is not None else None
        since = (
            before.get("lastTransitionTime")
            if before is not None and before.get("status") == value
            else None
        )
        item = {
            "type": cond.type,
            "status": value,
            "reason": cond.reason,
            "message": cond.message,
            "observedGeneration": generation,
            "lastTransitionTime": since or rfc3339(now),
        }
        if i is None:
            by_type[cond.type] = len(current)
            current.append(item)
        else:
            current[i] = item
    out["conditions"] = current
    return out
