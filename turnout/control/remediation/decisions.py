"""A person's decisions on a run: approve the step it waits on, deny it, cancel the run.

Each returns the state the run must still be in for the decision to be written (the
caller saves with ``expect_state``), or raises ``DecisionError`` saying why it cannot be
taken. Approving sets the run back to ``running`` at once; the engine then runs the step.

Cancelling also reverts what the run put in force: ``revert_changes`` lists the deletes
of the Mitigations the run wrote (``spec.run``), which the API commits as the person who
cancelled; a finished run whose Mitigations are still in force can be cancelled for that
alone (``reverted`` notes it in the timeline). A step in flight at the very moment of the
cancel may still write its Mitigation after the revert: its lease bounds it.
"""

from __future__ import annotations

from collections.abc import Iterable

from turnout.control.store.records import Change, StoredObject
from turnout.control.store.remediation_records import (
    ACTIVE_STATES,
    CANCELLED,
    DENIED,
    RUNNING,
    WAITING,
    RunRecord,
)


class DecisionError(Exception):
    pass


def approve(run: RunRecord, actor: str, now: float) -> str:
    if run.state != WAITING or run.approval is None:
        raise DecisionError(f"run {run.id} is {run.state}, not waiting for an approval")
    if now >= float(run.approval["expiresAt"]):
        raise DecisionError(f"the approval of run {run.id} expired; the run will not act")
    step = run.plan[run.step]["name"]
    run.approval = {**run.approval, "approved": True, "approvedBy": actor}
    run.state = RUNNING
    run.next_at = now
    run.timeline.append({"at": now, "event": "approved", "detail": f"{step} by {actor}"})
    return WAITING


def deny(run: RunRecord, actor: str, now: float) -> str:
    if run.state != WAITING:
        raise DecisionError(f"run {run.id} is {run.state}, not waiting for an approval")
    return _finish(run, DENIED, actor, now)


def cancel(run: RunRecord, actor: str, now: float) -> str:
    if run.state not in ACTIVE_STATES:
        raise DecisionError(f"run {run.id} is {run.state}: only active runs can be cancelled")
    return _finish(run, CANCELLED, actor, now)


def _finish(run: RunRecord, state: str, actor: str, now: float) -> str:
    expect = run.state
    run.state = state
    run.reason = f"{state} by {actor}"
    run.finished_at = run.next_at = now
    run.timeline.append({"at": now, "event": state, "detail": run.reason})
    return expect


def revert_changes(objects: Iterable[StoredObject], run_id: str) -> list[Change]:
    """Deletes of the Mitigations ``run_id`` wrote that are still stored."""
    out = []
    for obj in objects:
        spec = obj.spec if isinstance(obj.spec, dict) else {}
        if obj.kind == "Mitigation" and spec.get("run") == run_id:
            out.append(Change("delete", *obj.key, None, expect_version=obj.resource_version))
    return sorted(out, key=lambda c: c.key)


def reverted(run: RunRecord, actor: str, now: float, names: list[str]) -> str:
    """Note in a finished run's timeline that ``actor`` reverted its mitigations."""
    run.timeline.append(
        {"at": now, "event": "reverted", "detail": f"{', '.join(names)} by {actor}"}
    )
    return run.state
