"""Manual gate approvals: ``spec.approvals`` names gates (``confirm-rollout``,
``confirm-traffic-increase``, ``confirm-promotion``) that hold a release until a human
approves them (``turnout release approve NAME [--gate G]``, ``POST .../approve``).

An approval is recorded in the release state as ``"gate@step"``: it opens that gate at
that step only, so a gate before every ``setWeight`` needs an approval for each, and a
retried run (a fresh state) needs them again. ``gates`` folds the approvals into the
gates ``machine.tick`` checks (with webhooks of the same type, both must agree).
``approve`` without a gate approves what the release waits for now: the due manual
gates, or an untimed pause step (as ``resume``).
"""

from __future__ import annotations

from collections.abc import Sequence

from turnout.config.model.release import ApprovalSpec, ReleaseSpec
from turnout.control.releases import machine
from turnout.control.releases.state import PAUSED, PROGRESSING, ReleaseState, Step

Gates = dict[str, tuple[bool, str]]


class ApprovalError(ValueError):
    """Nothing to approve, or an unknown gate (with why, for a 409 answer)."""


def _due_types(steps: Sequence[Step], state: ReleaseState) -> set[str]:
    if state.phase != PROGRESSING:
        return set()
    due = set()
    if state.step == 0 and state.weight == 0:
        due.add("confirm-rollout")
    if state.step >= len(steps):
        due.add("confirm-promotion")
    elif steps[state.step].kind == "setWeight":
        due.add("confirm-traffic-increase")
    return due


def key(approval: ApprovalSpec, state: ReleaseState) -> str:
    return f"{approval.name}@{state.step}"


def due(spec: ReleaseSpec, steps: Sequence[Step], state: ReleaseState) -> list[ApprovalSpec]:
    """The manual gates the release's next transition needs and has not got."""
    types = _due_types(steps, state)
    return [a for a in spec.approvals if a.type in types and key(a, state) not in state.approved]


def gates(spec: ReleaseSpec, state: ReleaseState, found: Gates | None, name: str) -> Gates:
    """``found`` (the webhooks' gates) with the manual ones folded in."""
    out = dict(found or {})
    for a in spec.approvals:
        ok = key(a, state) in state.approved
        why = (
            "approved"
            if ok
            else f"approval {a.name}: turnout release approve {name} --gate {a.name}"
        )
        if a.type in out:
            was_ok, was_why = out[a.type]
            out[a.type] = (was_ok and ok, why if was_ok or not ok else was_why)
        else:
            out[a.type] = (ok, why)
    return out


def approve(
    spec: ReleaseSpec,
    steps: tuple[Step, ...],
    state: ReleaseState,
    gate: str | None,
    now: float,
    actor: str,
    reason: str = "",
) -> ReleaseState:
    """``state`` with the approval; the same object when it was approved already."""
    if gate is None:
        if state.phase == PAUSED and state.hold == "step":
            return machine.command("resume", steps, state, now, actor, reason or "approved")
        names = [a.name for a in due(spec, steps, state)]
        if not names:
            raise ApprovalError(
                f"nothing waits for an approval now ({state.phase} at step {state.step})"
            )
    else:
        known = [a.name for a in spec.approvals]
        if gate not in known:
            raise ApprovalError(
                f"no approval gate {gate!r} in this release (gates: {', '.join(known) or 'none'})"
            )
        names = [gate]
    keys = tuple(f"{n}@{state.step}" for n in names)
    if all(k in state.approved for k in keys):
        return state
    kept = tuple(a for a in state.approved if int(a.rpartition("@")[2]) >= state.step)
    said = f"approve {', '.join(names)} by {actor}" + (f": {reason}" if reason else "")
    return state.moved(
        now,
        approved=kept + tuple(k for k in keys if k not in kept),
        reason=said,
        by=actor,
    )
