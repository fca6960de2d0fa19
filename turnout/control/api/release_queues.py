"""Release queues and promotion between environments over the admin API.

- ``GET /api/v1/release-queues``: every Environment's queue (``{"items": [view, ...]}``);
- ``GET /api/v1/release-queues/{env}``: one (``queue.view``: environment, namespaces,
  next, paused, blackout, active, queued with position and why each waits);
- ``POST /api/v1/release-queues/{env}/pause|resume`` (editor; body ``{"reason"}``);
- ``POST /api/v1/namespaces/{ns}/releases/{name}/promote-to`` (editor; body
  ``{"environment", "namespace"?}``): copy a ``Promoted`` release into the environment.

The shapes are documented in docs/releases.md (section "API").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Request
from pydantic import BaseModel, Field

from turnout.control.api.deps import Control, Editor, Viewer, forbid
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.releases import promotion, queue, queue_commands

router = APIRouter(tags=["releases"], responses=FAILURES)

Name = Annotated[str, Path(min_length=1, max_length=253)]


class ReasonBody(BaseModel):
    reason: str = Field(default="", max_length=1024)


class PromoteToBody(BaseModel):
    environment: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, min_length=1, max_length=253)


def _visible(objects: dict[Any, Any], principal: Any) -> dict[Any, Any]:
    return {k: o for k, o in objects.items() if principal.sees_namespace(o.namespace)}


@router.get("/release-queues")
async def release_queues(control: Control, principal: Viewer) -> dict[str, Any]:
    objects = _visible(control.stored, principal)
    now = control.reconcile.clock.time()
    envs = queue.environments(objects)
    return {"items": [queue.view(env, objects, now) for env in envs.values()]}


@router.get("/release-queues/{environment}")
async def release_queue(environment: Name, control: Control, principal: Viewer) -> dict[str, Any]:
    objects = _visible(control.stored, principal)
    env = queue.environments(objects).get(environment)
    if env is None:
        raise ApiError(404, f"no Environment named {environment!r}")
    return queue.view(env, objects, control.reconcile.clock.time())


@router.post("/release-queues/{environment}/{verb}")
async def release_queue_command(
    environment: Name,
    verb: Literal["pause", "resume"],
    control: Control,
    principal: Editor,
    body: Annotated[ReasonBody | None, Body()] = None,
) -> dict[str, Any]:
    reason = body.reason if body is not None else ""
    changed, paused = await queue_commands.set_paused(
        control,
        environment,
        verb == "pause",
        principal,
        reason,
        now=control.reconcile.clock.time(),
    )
    return {"environment": environment, "changed": changed, "paused": paused}


@router.post("/namespaces/{namespace}/releases/{name}/promote-to")
async def release_promote_to(
    namespace: Name,
    name: Name,
    request: Request,
    control: Control,
    principal: Editor,
    body: PromoteToBody,
) -> dict[str, Any]:
    target_ns = body.namespace
    if not principal.writes_namespace(namespace):
        await forbid(
            control, request, principal, f"token {principal.name!r} may not write {namespace}"
        )
    try:
        objects = control.stored
        env = queue.environments(objects).get(body.environment)
        if env is not None:
            target_ns = target_ns or env.spec.namespaces[0]
            if not principal.writes_namespace(target_ns):
                await forbid(
                    control,
                    request,
                    principal,
                    f"token {principal.name!r} may not write {target_ns}",
                )
        change = await promotion.promote_to(
            control, namespace, name, body.environment, principal, target_ns
        )
    except promotion.PromotionError as exc:
        raise ApiError(409, str(exc)) from None
    return {"environment": body.environment, "namespace": change.namespace, "name": change.name}
