"""A person's decisions on a run: approve the step it waits on, deny it, cancel the run.

Each returns the state the run must still be in for the decision to be written (the
caller saves with ``expect_state``), or raises ``DecisionError`` saying why it cannot be
taken. Approving sets the run back to ``running`` at once; the engine then runs the step.
"""

from __future__ import annotations

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
