"""Release commands as plain async functions: what the admin API, the CLI (through the
API) and remediation runbooks call.

``abort``, ``pause``, ``promote``, ``retry``, ``resume`` and ``skip_analysis`` each read
the Release fresh from the store, apply ``machine.command`` (legal in every phase,
idempotent) and, when the state changes, commit it as a new revision of the Release
naming the ``resourceVersion`` it read; on a conflict (the reconciler or another replica
moved it meanwhile) they read again and retry. The commit is the audit record: actor =
the caller's principal, action ``release-<command>``, message with the reason. An abort
is a revision, so it reaches every worker of every replica like any config change.
``skip_analysis`` (the emergency bypass of the analysis) and ``bypass`` (of the
environment's queue, the schedule and blackout windows) require a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from turnout.config.model.release import ReleaseSpec
from turnout.control.auth import Principal
from turnout.control.releases import approvals
from turnout.control.releases.machine import Command, command
from turnout.control.releases.reconciler import with_state
from turnout.control.releases.state import PENDING, ReleaseState, Step, plan
from turnout.control.store.errors import Conflict
from turnout.control.store.records import Change, CommitResult, StoredObject

ATTEMPTS: Final = 5


class ReasonRequired(ValueError):
    """``skip-analysis`` without a reason."""


class _Store(Protocol):
    async def get(self, kind: str, namespace: str, name: str) -> StoredObject: ...


class ReleaseHost(Protocol):
    """What the commands need: ``turnout.control.writes.Writes`` (or ``ControlPlane``)."""

    @property
    def store(self) -> Any: ...

    async def write(
        self, changes: list[Change], principal: Principal, *, message: str = ..., action: str = ...
    ) -> CommitResult: ...


def current(obj: StoredObject) -> ReleaseState:
    found = ReleaseState.from_annotations(obj.annotations)
    if found is None or found.generation != obj.generation:
        return ReleaseState(phase=PENDING, generation=obj.generation)
    return found


async def run(
    host: ReleaseHost,
    namespace: str,
    name: str,
    name_of_command: Command,
    principal: Principal,
    reason: str = "",
    *,
    now: float,
) -> ReleaseState:
    """Apply one command; returns the state after it (unchanged if it changed nothing)."""
    if name_of_command in ("skip-analysis", "bypass") and not reason.strip():
        raise ReasonRequired(
            f"{name_of_command} needs a reason (it is an audited emergency bypass)"
        )

    def change(spec: ReleaseSpec, steps: tuple[Step, ...], state: ReleaseState) -> ReleaseState:
        return command(name_of_command, steps, state, now, principal.actor, reason)

    return await _apply(host, namespace, name, name_of_command, principal, reason, change)


async def approve(
    host: ReleaseHost,
    namespace: str,
    name: str,
    gate: str | None,
    principal: Principal,
    reason: str = "",
    *,
    now: float,
) -> ReleaseState:
    """Approve a manual gate (``approvals.approve``; raises ``ApprovalError``)."""

    def change(spec: ReleaseSpec, steps: tuple[Step, ...], state: ReleaseState) -> ReleaseState:
        return approvals.approve(spec, steps, state, gate, now, principal.actor, reason)

    verb = "approve" + (f" {gate}" if gate else "")
    return await _apply(host, namespace, name, verb, principal, reason, change)


async def _apply(
    host: ReleaseHost,
    namespace: str,
    name: str,
    verb: str,
    principal: Principal,
    reason: str,
    change: Callable[[ReleaseSpec, tuple[Step, ...], ReleaseState], ReleaseState],
) -> ReleaseState:
    for attempt in range(ATTEMPTS):
        obj = await host.store.get("Release", namespace, name)
        spec = ReleaseSpec.model_validate(obj.spec)
        state = current(obj)
        new = change(spec, plan(spec), state)
        if new == state:
            return state
        message = f"{verb} release {namespace}/{name}" + (f": {reason}" if reason else "")
        try:
            await host.write(
                [with_state(obj, new)],
                principal,
                message=message,
                action=f"release-{verb.split()[0]}",
            )
        except Conflict:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return new
    raise AssertionError("unreachable")


async def abort(
    host: ReleaseHost,
    namespace: str,
    name: str,
    *,
    principal: Principal,
    reason: str = "",
    now: float,
) -> ReleaseState:
    """All traffic to stable, in every worker and replica (phase ``Aborted``)."""
    return await run(host, namespace, name, "abort", principal, reason, now=now)


async def pause(
    host: ReleaseHost,
    namespace: str,
    name: str,
    *,
    principal: Principal,
    reason: str = "",
    now: float,
) -> ReleaseState:
    """Stop advancing (traffic stays where it is; the candidate is still judged)."""
    return await run(host, namespace, name, "pause", principal, reason, now=now)


async def promote(
    host: ReleaseHost,
    namespace: str,
    name: str,
    *,
    principal: Principal,
    reason: str = "",
    now: float,
) -> ReleaseState:
    return await run(host, namespace, name, "promote", principal, reason, now=now)


async def resume(
    host: ReleaseHost,
    namespace: str,
    name: str,
    *,
    principal: Principal,
    reason: str = "",
    now: float,
) -> ReleaseState:
    return await run(host, namespace, name, "resume", principal, reason, now=now)


async def retry(
    host: ReleaseHost,
    namespace: str,
    name: str,
    *,
    principal: Principal,
    reason: str = "",
    now: float,
) -> ReleaseState:
    return await run(host, namespace, name, "retry", principal, reason, now=now)


async def skip_analysis(
    host: ReleaseHost, namespace: str, name: str, *, principal: Principal, reason: str, now: float
) -> ReleaseState:
    return await run(host, namespace, name, "skip-analysis", principal, reason, now=now)


def history(revisions: Sequence[dict[str, Any]], namespace: str, name: str) -> list[dict[str, Any]]:
    """The revisions (``info_json`` form) that changed this Release, newest first."""
    out = []
    for rev in revisions:
        for ch in rev.get("changes") or ():
            if (
                ch.get("kind") == "Release"
                and ch.get("namespace") == namespace
                and ch.get("name") == name
            ):
                out.append(rev)
                break
    return out
