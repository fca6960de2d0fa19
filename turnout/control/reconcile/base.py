"""The reconciler interface: what a reconciler declares, gets and returns.

A reconciler is level-triggered: ``reconcile(obj, ctx)`` gets the object's *current*
state (never a diff or an event) and must do whatever makes the world match it, then
return a ``Result``: the conditions it reports on the object and, optionally, the wall
time (``ctx.now`` + something) at which it wants to look at the object again. Calling it
twice in a row must be harmless. Errors are raised, not returned: the manager retries
with capped exponential back-off and reports the error in the reconciler's ``condition``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from turnout.control.store.records import Change, ObjectKey, StoredObject
from turnout.control.store.remediation_tables import RemediationTables
from turnout.core.clock import Clock, utcnow
from turnout.observe.metrics import Aggregate


@dataclass(frozen=True, slots=True)
class Condition:
    """A Gateway-API style condition; the manager adds ``observedGeneration`` and
    ``lastTransitionTime`` when it writes it into the object's status."""

    type: str
    status: bool
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    conditions: Sequence[Condition] = field(default_factory=tuple)
    requeue_at: float | None = None  # wall-clock seconds; None: run again on change only


class Committer(Protocol):
    async def __call__(self, changes: list[Change], *, message: str, action: str) -> None: ...


def no_observations() -> Aggregate:
    """What a control plane without a data plane (tests, ``turnout check``) observes."""
    return Aggregate()


@dataclass(frozen=True, slots=True)
class Context:
    """What a reconciler may use: the clock, a commit as ``system:<its name>`` and the
    data plane's counters of this replica (``observe()``: summed over its workers, the
    same totals ``/metrics`` serves; cumulative, so a reconciler diffs two readings)."""

    clock: Clock
    commit: Committer
    observe: Callable[[], Aggregate] = no_observations
    # The remediation engine's extras: every stored object, and the runs' tables.
    objects: Callable[[], Mapping[ObjectKey, StoredObject]] = dict
    runs: RemediationTables | None = None

    @property
    def now(self) -> float:
        return self.clock.time()

    def utcnow(self) -> datetime:
        return utcnow(self.clock)


class Reconciler(Protocol):
    name: str  # also its actor in the audit log: "system:<name>"
    kinds: frozenset[str]  # the kinds it watches
    condition: str  # the condition type its errors are reported under

    async def reconcile(self, obj: StoredObject, ctx: Context) -> Result: ...
