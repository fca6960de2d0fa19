"""Revisions: list, show, diff between two, and rollback (which makes a new revision).

Whole-config operations: a token scoped to namespaces may not use them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request

from turnout.control.api.deps import Control, Editor, Viewer, forbid
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.api.writes import commit, is_dry_run, results_json
from turnout.control.auth import Principal
from turnout.control.diffs import revision_diff
from turnout.control.service import ControlPlane
from turnout.control.store.repository import (
    RevisionInfo,
    changes_to_reach,
    redacted,
    rfc3339,
)

router = APIRouter(tags=["revisions"], responses=FAILURES)

MAX_REVISION = 2**53  # beyond any real revision; keeps huge numbers out of the database
RevisionNumber = Annotated[int, Path(ge=1, le=MAX_REVISION)]


def info_json(info: RevisionInfo) -> dict[str, Any]:
    return {
        "revision": info.number,
        "time": rfc3339(info.created_at),
        "actor": info.actor,
        "message": info.message,
        "changes": info.changes,
        "rollbackOf": info.rollback_of,
    }


async def _unscoped(control: ControlPlane, request: Request, principal: Principal) -> None:
    if principal.scoped:
        await forbid(
            control,
            request,
            principal,
            f"token {principal.name!r} is limited to namespaces; "
            "revisions cover the whole configuration",
        )


@router.get("/revisions")
async def list_revisions(
    request: Request,
    control: Control,
    principal: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[int | None, Query(ge=1, le=MAX_REVISION)] = None,
) -> dict[str, Any]:
    await _unscoped(control, request, principal)
    items = await control.store.revisions(limit=limit, before=before)
    return {"items": [info_json(i) for i in items], "metadata": {"current": control.store_revision}}


async def _manifests(control: ControlPlane, number: int) -> list[dict[str, Any]]:
    if number == 0:
        return []
    _, manifests = await control.store.revision(number)
    return [redacted(m) for m in manifests]


@router.get("/revisions/{number}")
async def get_revision(
    number: RevisionNumber, request: Request, control: Control, principal: Viewer
) -> dict[str, Any]:
    await _unscoped(control, request, principal)
    info, manifests = await control.store.revision(number)
    return {**info_json(info), "objects": [redacted(m) for m in manifests]}


@router.get("/revisions/{number}/diff")
async def diff_revisions(
    number: RevisionNumber,
    request: Request,
    control: Control,
    principal: Viewer,
    to: Annotated[int | None, Query(ge=0, le=MAX_REVISION)] = None,
) -> dict[str, Any]:
    """What changed from revision ``number`` to revision ``to`` (default: the current one)."""
    await _unscoped(control, request, principal)
    target = control.store_revision if to is None else to
    if number < 0:
        raise ApiError(400, "revision numbers start at 1")
    before = await _manifests(control, number)
    after = await _manifests(control, target)
    text, changes = revision_diff(before, after, f"revision {number}", f"revision {target}")
    return {"from": number, "to": target, "diff": text, "changes": changes}


@router.post("/rollback")
async def rollback(
    request: Request,
    control: Control,
    principal: Editor,
    revision: Annotated[int, Body(embed=True, ge=1, le=MAX_REVISION)],
    message: Annotated[str, Body(embed=True, max_length=1000)] = "",
    dry_run: Annotated[str | None, Query(alias="dryRun")] = None,
) -> dict[str, Any]:
    """Make the stored objects what they were at ``revision``, as a new revision."""
    await _unscoped(control, request, principal)
    _, manifests = await control.store.revision(revision)
    changes = changes_to_reach(list(control.stored.values()), manifests)
    dry = is_dry_run(dry_run)
    if not changes:
        return {
            "revision": control.store_revision,
            "changed": False,
            "dryRun": dry,
            "results": [],
            "rollbackOf": revision,
        }
    result = await commit(
        control,
        request,
        principal,
        changes,
        action="rollback",
        target=f"revision {revision}",
        message=message or f"rollback to revision {revision}",
        dry_run=dry,
        rollback_of=revision,
    )
    return {**results_json(result, dry), "rollbackOf": revision}
