"""Remediation actions on releases: ``abort_release`` and ``pause_release``.

They apply the same state-machine command as ``turnout release abort|pause`` (and the
API) do — ``releases.machine.command`` on the Release's persisted state — and commit the
new state as a revision through the run's committer, so the abort reaches every worker
of every replica like any config change and the audit log names the run. Both are
idempotent (a command that changes nothing commits nothing), so a step repeated after a
restart is harmless; a concurrent change of the Release is a ``Conflict`` the engine
retries with the step's back-off. The Release is looked up in the Runbook's namespace.
"""

from __future__ import annotations

from pydantic import StrictStr

from turnout.config.model.release import ReleaseSpec
from turnout.control.releases.commands import current
from turnout.control.releases.machine import Command, command
from turnout.control.releases.reconciler import with_state
from turnout.control.releases.state import plan
from turnout.control.remediation.actions import ActionContext, ActionError, ActionParams, action


class ReleaseParams(ActionParams):
    release: StrictStr  # the Release's name, in the Runbook's namespace
    reason: StrictStr = ""


async def _apply(cmd: Command, params: ReleaseParams, ctx: ActionContext) -> str:
    where = f"{ctx.namespace}/{params.release}"
    obj = ctx.objects().get(("Release", ctx.namespace, params.release))
    if obj is None:
        raise ActionError(f"release {where} not found", retry=False)
    state = current(obj)
    steps = plan(ReleaseSpec.model_validate(obj.spec))
    reason = params.reason or f"remediation run {ctx.run_id}"
    new = command(cmd, steps, state, ctx.now, f"system:remediation run {ctx.run_id}", reason)
    if new == state:
        return f"release {where} unchanged ({state.phase})"
    await ctx.commit(
        [with_state(obj, new)],
        message=f"{cmd} release {where}: {reason}",
        action=f"release-{cmd}",
    )
    return f"release {where}: {cmd} ({state.phase} -> {new.phase})"


@action("abort_release", ReleaseParams)
async def abort_release(params: ReleaseParams, ctx: ActionContext) -> str:
    """Send all of a Release's traffic back to stable, in every worker and replica."""
    return await _apply("abort", params, ctx)


@action("pause_release", ReleaseParams)
async def pause_release(params: ReleaseParams, ctx: ActionContext) -> str:
    """Stop a Release advancing (traffic stays where it is; analysis goes on)."""
    return await _apply("pause", params, ctx)
