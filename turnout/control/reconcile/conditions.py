"""Writing a reconciler's ``Condition``s into an object's status, Gateway-API style.

Each condition carries the ``observedGeneration`` it was computed for and a
``lastTransitionTime`` that moves only when its ``status`` flips
(``store.plan.merged_status``). Conditions of other types are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from turnout.control.reconcile.base import Condition
from turnout.control.store.plan import merged_status
from turnout.control.store.records import rfc3339


def condition_dict(cond: Condition, generation: int) -> dict[str, Any]:
    return {
        "type": cond.type,
        "status": "True" if cond.status else "False",
        "reason": cond.reason,
        "message": cond.message,
        "observedGeneration": generation,
    }


def merge_conditions(
    status: dict[str, Any] | None,
    conditions: Sequence[Condition],
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """A new status: ``status`` with ``conditions`` replacing those of the same type."""
    items = [condition_dict(c, generation) for c in conditions]
    return merged_status(status, items, rfc3339(now))
