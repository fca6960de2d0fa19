"""Release commands and views: ``POST /api/v1/namespaces/{ns}/releases/{name}/{command}``
(promote, abort, retry, pause, resume, skip-analysis, bypass; body ``{"reason": "..."}``,
required for skip-analysis and bypass), ``POST .../{name}/approve`` (``{"gate",
"reason"}``: a manual gate), ``GET .../{name}/state`` (phase, step, weights, why, the
analysis in numbers), ``GET .../{name}/history`` (the revisions that moved it) and
``GET .../{name}/measurements`` (per-version numbers for an Argo Rollouts web provider).

Commands need the editor role and write access to the namespace; each is a revision
whose audit record names the caller, the command and the reason. They are idempotent:
a command that changes nothing answers 200 with ``changed: false``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Request
from pydantic import BaseModel, Field

from turnout.config.model.release import ReleaseSpec
from turnout.control.api.deps import Control, Editor, Viewer, forbid
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.api.revisions import info_json
from turnout.control.releases import approvals, commands
from turnout.control.releases.approvals import ApprovalError
from turnout.control.releases.measurements import measurements
from turnout.control.releases.state import plan

router = APIRouter(tags=["releases"], responses=FAILURES)

Name = Annotated[str, Path(min_length=1, max_length=253)]
CommandName = Literal["promote", "abort", "retry", "pause", "resume", "skip-analysis", "bypass"]


class CommandBody(BaseModel):
    reason: str = Field(default="", max_length=1024)


def _view(obj: Any) -> dict[str, Any]:
    state = commands.current(obj)
    spec = ReleaseSpec.model_validate(obj.spec)
    steps = plan(spec)
    conditions = (obj.status or {}).get("conditions") or []
    return {
        "namespace": obj.namespace,
        "name": obj.name,
        "state": asdict(state),
        "steps": [s.describe() for s in steps],
        "conditions": conditions,
        # the manual gates its next move waits for (what a console's Approve button opens)
        "dueApprovals": [
            {"name": a.name, "type": a.type} for a in approvals.due(spec, steps, state)
        ],
    }


class ApproveBody(BaseModel):
    reason: str = Field(default="", max_length=1024)
    gate: str | None = Field(default=None, min_length=1, max_length=253)


@router.post("/namespaces/{namespace}/releases/{name}/approve")
async def release_approve(
    namespace: Name,
    name: Name,
    request: Request,
    control: Control,
    principal: Editor,
    body: Annotated[ApproveBody | None, Body()] = None,
) -> dict[str, Any]:
    """Approve a manual gate (``gate``: one of ``spec.approvals``; without it, what the
    release waits for now: its due gates or an untimed pause step)."""
    if not principal.writes_namespace(namespace):
        await forbid(
            control, request, principal, f"token {principal.name!r} may not write {namespace}"
        )
    body = body or ApproveBody()
    before = commands.current(await control.store.get("Release", namespace, name))
    try:
        after = await commands.approve(
            control,
            namespace,
            name,
            body.gate,
            principal,
            body.reason,
            now=control.reconcile.clock.time(),
        )
    except ApprovalError as exc:
        raise ApiError(409, str(exc)) from None
    return {"command": "approve", "changed": after != before, "state": asdict(after)}


@router.post("/namespaces/{namespace}/releases/{name}/{command}")
async def release_command(
    namespace: Name,
    name: Name,
    command: CommandName,
    request: Request,
    control: Control,
    principal: Editor,
    body: Annotated[CommandBody | None, Body()] = None,
) -> dict[str, Any]:
    if not principal.writes_namespace(namespace):
        await forbid(
            control, request, principal, f"token {principal.name!r} may not write {namespace}"
        )
    reason = body.reason if body is not None else ""
    before = commands.current(await control.store.get("Release", namespace, name))
    try:
        after = await commands.run(
            control, namespace, name, command, principal, reason, now=control.reconcile.clock.time()
        )
    except commands.ReasonRequired as exc:
        raise ApiError(400, f"reason: {exc}") from None
    return {"command": command, "changed": after != before, "state": asdict(after)}


@router.get("/namespaces/{namespace}/releases/{name}/state")
async def release_state(
    namespace: Name, name: Name, request: Request, control: Control, principal: Viewer
) -> dict[str, Any]:
    if not principal.sees_namespace(namespace):
        await forbid(
            control, request, principal, f"token {principal.name!r} may not read {namespace}"
        )
    return _view(await control.store.get("Release", namespace, name))


@router.get("/namespaces/{namespace}/releases/{name}/history")
async def release_history(
    namespace: Name, name: Name, request: Request, control: Control, principal: Viewer
) -> dict[str, Any]:
    if not principal.sees_namespace(namespace):
        await forbid(
            control, request, principal, f"token {principal.name!r} may not read {namespace}"
        )
    await control.store.get("Release", namespace, name)  # 404 when absent
    revisions = [info_json(i) for i in await control.store.revisions(limit=500)]
    return {"items": commands.history(revisions, namespace, name)}


@router.get("/namespaces/{namespace}/releases/{name}/measurements")
async def release_measurements(
    namespace: Name, name: Name, request: Request, control: Control, principal: Viewer
) -> dict[str, Any]:
    """Per-version requests, failures, success rate and latency across replicas, with
    the sequential test's verdict: usable as an Argo Rollouts ``web`` metric provider."""
    if not principal.sees_namespace(namespace):
        await forbid(
            control, request, principal, f"token {principal.name!r} may not read {namespace}"
        )
    obj = await control.store.get("Release", namespace, name)
    spec = ReleaseSpec.model_validate(obj.spec)
    found = measurements(namespace, name, spec, await control.observations.read())
    found["state"] = asdict(commands.current(obj))
    return found
