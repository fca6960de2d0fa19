"""The release state machine as pure functions: ``tick`` (what the reconciler does now)
and ``command`` (what a human or a runbook asked for).

``tick`` walks the steps from the current one, as far as it can go at time ``now``:
``setWeight`` moves at once, a timed ``pause`` waits until its end, an untimed one holds
the release in ``Paused``, an ``analysis`` step passes as soon as the sequential test
passes on the counts since the step began, fails as soon as it fails, and at its end
applies ``onInconclusive``. While the candidate takes traffic the whole run is also
judged continuously (``analysis.continuous``), so a failing candidate is caught between
steps too. It returns the new state and when to look again.

Every command is legal in every phase and idempotent: a command that changes nothing
returns the state unchanged (and the caller writes nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Final, Literal

from turnout.config.model.release import AnalysisSpec
from turnout.control.releases.state import (
    ABORTED,
    DEGRADED,
    LIVE,
    PAUSED,
    PROGRESSING,
    PROMOTED,
    ReleaseState,
    Step,
)
from turnout.control.releases.stats import Outcome

# How often a live release is looked at (the workers report counters once a second).
TICK: Final = 0.5
SYSTEM: Final = "system:release"

Command = Literal["promote", "abort", "retry", "pause", "resume", "skip-analysis", "bypass"]
COMMANDS: Final[tuple[Command, ...]] = (
    "promote",
    "abort",
    "retry",
    "pause",
    "resume",
    "skip-analysis",
    "bypass",
)

# judge("run" | "step") -> (outcome, message in numbers)
Judge = Callable[[str], tuple[Outcome, str]]


def start(generation: int, now: float, run: int = 1) -> ReleaseState:
    return ReleaseState(
        phase=PROGRESSING,
        step=0,
        step_started=now,
        generation=generation,
        run=run,
        reason="started",
        by=SYSTEM,
    )


def _failed(state: ReleaseState, analysis: AnalysisSpec, now: float, why: str) -> ReleaseState:
    if analysis.on_failure == "abort":
        return state.moved(now, phase=DEGRADED, weight=0, hold="", reason=why, by=SYSTEM)
    if state.phase == PAUSED:
        return state  # already waiting for a human: keep the first reason
    return state.moved(now, phase=PAUSED, hold="step", reason=why + "; paused", by=SYSTEM)


def tick(
    steps: tuple[Step, ...],
    state: ReleaseState,
    now: float,
    judge: Judge,
    analysis: AnalysisSpec,
    gates: dict[str, tuple[bool, str]] | None = None,
    hold: str | None = None,
) -> tuple[ReleaseState, float | None]:
    """``gates``: (open, why) per configured webhook gate type (``webhooks.evaluate``);
    a confirm gate is used up by the transition it opens. ``hold``: why the release may
    not move now (a blackout): it stays at its step, still judged and rolled back."""
    if state.phase not in LIVE:
        return state, None
    gates = dict(gates or {})
    rollback = gates.get("rollback")
    if rollback is not None and rollback[0]:
        return state.moved(
            now, phase=DEGRADED, weight=0, hold="", reason=f"rolled back: {rollback[1]}", by=SYSTEM
        ), None
    if state.phase == PROGRESSING and state.step == 0 and state.weight == 0:
        pre = gates.get("pre-rollout")
        if pre is not None and not pre[0]:
            return state.moved(
                now, phase=DEGRADED, reason=f"pre-rollout failed: {pre[1]}", by=SYSTEM
            ), None
        confirm = gates.get("confirm-rollout")
        if confirm is not None and not confirm[0]:
            return _held(state, now, "confirm-rollout", confirm[1])
    if analysis.continuous and not state.skip_analysis:
        outcome, message = judge("run")
        if outcome == "fail":
            why = f"analysis failed at step {state.step}: {message}"
            new = _failed(state, analysis, now, why)
            return new, (now + TICK if new.phase in LIVE else None)
    if state.phase == PAUSED:
        return state, now + TICK  # keep judging a candidate that still takes traffic
    if hold is not None:
        if state.reason == hold:
            return state, now + TICK
        return state.moved(now, reason=hold, by=SYSTEM), now + TICK
    notes: list[str] = []
    while True:
        gate = _gate_before(steps, state)
        if gate is not None and gate in gates:
            is_open, why = gates[gate]
            gates[gate] = (False, "asked again at the next tick")  # used up
            if not is_open:
                held, again = _held(state, now, gate, why)
                if notes:
                    held = replace(held, reason="; ".join([*notes, held.reason]))
                return held, again
        new, requeue = _step(steps, state, now, judge, analysis)
        if new.reason != state.reason:
            notes.append(new.reason)
        if requeue is not None or new.phase not in LIVE or new.step == state.step:
            if len(notes) > 1:
                new = replace(new, reason="; ".join(notes))
            return new, requeue
        state = new


def _gate_before(steps: tuple[Step, ...], state: ReleaseState) -> str | None:
    """The confirm gate the next transition needs, if it is gated at all."""
    if state.step >= len(steps):
        return "confirm-promotion"
    if steps[state.step].kind == "setWeight":
        return "confirm-traffic-increase"
    return None


def _held(state: ReleaseState, now: float, gate: str, why: str) -> tuple[ReleaseState, float]:
    reason = f"step {state.step}: waiting for {gate} ({why})"
    if state.reason == reason:
        return state, now + TICK
    return state.moved(now, reason=reason, by=SYSTEM), now + TICK


def _step(
    steps: tuple[Step, ...],
    state: ReleaseState,
    now: float,
    judge: Judge,
    analysis: AnalysisSpec,
) -> tuple[ReleaseState, float | None]:
    """At most one transition: the next state and when to look again (None: at once,
    the step moved on; or never, the release is settled)."""
    if state.step >= len(steps):
        return state.moved(
            now,
            phase=PROMOTED,
            weight=100,
            hold="",
            by=SYSTEM,
            reason="promoted: every step passed",
        ), None
    step = steps[state.step]
    n = state.step
    if step.kind == "setWeight":
        return state.moved(
            now,
            weight=step.weight,
            step=n + 1,
            by=SYSTEM,
            reason=f"step {n}: setWeight {step.weight}",
        ), None
    if step.kind == "pause":
        if step.seconds is None:
            return state.moved(
                now,
                phase=PAUSED,
                hold="step",
                by=SYSTEM,
                reason=f"step {n}: paused until promoted or resumed",
            ), now + TICK
        end = state.step_started + step.seconds
        if now < end:
            return state, min(end, now + TICK)
        return state.moved(
            now, step=n + 1, by=SYSTEM, reason=f"step {n}: pause {step.seconds:g}s over"
        ), None
    assert step.seconds is not None
    if state.skip_analysis:
        return state.moved(now, step=n + 1, by=SYSTEM, reason=f"step {n}: analysis skipped"), None
    if state.step_started >= now:
        return state, now + TICK  # entered just now: its window holds no counts yet
    outcome, message = judge("step")
    if outcome == "pass":
        return state.moved(
            now, step=n + 1, by=SYSTEM, reason=f"step {n}: analysis passed: {message}"
        ), None
    if outcome == "fail":
        new = _failed(state, analysis, now, f"analysis failed at step {n}: {message}")
        return new, (now + TICK if new.phase in LIVE else None)
    if now >= state.step_started + step.seconds:
        why = f"analysis inconclusive after {step.seconds:g}s at step {n}: {message}"
        if analysis.on_inconclusive == "abort":
            return state.moved(now, phase=DEGRADED, weight=0, reason=why, by=SYSTEM), None
        return state.moved(
            now, phase=PAUSED, hold="step", reason=why + "; paused", by=SYSTEM
        ), now + TICK
    return state, now + TICK


def command(
    name: Command,
    steps: tuple[Step, ...],
    state: ReleaseState,
    now: float,
    actor: str,
    reason: str = "",
) -> ReleaseState:
    """``state`` after ``name``; the same object when the command changes nothing."""
    said = f"{name} by {actor}" + (f": {reason}" if reason else "")
    if name == "promote":
        if state.phase == PROMOTED:
            return state
        return state.moved(
            now, phase=PROMOTED, weight=100, step=len(steps), hold="", reason=said, by=actor
        )
    if name == "abort":
        if state.phase in (ABORTED, DEGRADED):
            return state
        return state.moved(now, phase=ABORTED, weight=0, hold="", reason=said, by=actor)
    if name == "retry":
        if state.phase not in (ABORTED, DEGRADED):
            return state
        fresh = start(state.generation, now, run=state.run + 1)
        return fresh.moved(now, reason=said, by=actor)
    if name == "pause":
        if state.phase != PROGRESSING:
            return state
        return state.moved(now, phase=PAUSED, hold="human", reason=said, by=actor)
    if name == "resume":
        if state.phase != PAUSED:
            return state
        if state.hold == "human":  # the interrupted step starts over
            return state.moved(
                now, phase=PROGRESSING, hold="", step_started=now, reason=said, by=actor
            )
        return state.moved(
            now, phase=PROGRESSING, hold="", step=state.step + 1, reason=said, by=actor
        )
    if name == "bypass":  # of the queue, the schedule and blackouts (queue.py)
        if state.bypass:
            return state
        return state.moved(now, bypass=True, reason=said, by=actor)
    # skip-analysis: the audited emergency bypass of the analysis
    if state.skip_analysis:
        return state
    new = state.moved(now, skip_analysis=True, reason=said, by=actor)
    if new.phase == PAUSED and new.hold == "step":
        new = new.moved(now, phase=PROGRESSING, hold="", step=new.step + 1)
    return new
