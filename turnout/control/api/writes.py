"""The write path shared by every endpoint that changes objects.

``commit`` runs the change through ``ControlPlane.write`` (validation of the combined
desired state in the store's transaction) and audits every refusal: invalid, conflict,
not found. Successful writes are audited by the store in the same transaction as the
revision they create. ``results_json`` is the body of apply, delete and rollback.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from turnout.control.api.deps import remote_of
from turnout.control.auth import Principal
from turnout.control.diffs import object_diff
from turnout.control.service import ControlPlane, OwnedByFile
from turnout.control.store.errors import Conflict, Invalid, NotFound
from turnout.control.store.repository import Change, CommitResult


async def commit(
    control: ControlPlane,
    request: Request,
    principal: Principal,
    changes: list[Change],
    *,
    action: str,
    target: str,
    message: str,
    dry_run: bool,
    rollback_of: int | None = None,
) -> CommitResult:
    remote = remote_of(request)
    try:
        return await control.write(
            changes,
            principal,
            message=message,
            dry_run=dry_run,
            action=action,
            remote=remote,
            rollback_of=rollback_of,
        )
    except Invalid as exc:
        first = str(exc.problems[0]) if exc.problems else str(exc)
        await control.audit(principal, action, "invalid", target, first, remote)
        raise
    except (Conflict, OwnedByFile) as exc:
        await control.audit(principal, action, "conflict", target, str(exc), remote)
        raise
    except NotFound as exc:
        await control.audit(principal, action, "not_found", target, str(exc), remote)
        raise


def results_json(result: CommitResult, dry_run: bool) -> dict[str, Any]:
    items = []
    for r in result.results:
        item: dict[str, Any] = {
            "kind": r.kind,
            "namespace": r.namespace,
            "name": r.name,
            "action": r.action,
        }
        if r.action != "unchanged":
            item["diff"] = object_diff((r.kind, r.namespace, r.name), r.before, r.after)
        items.append(item)
    return {
        "revision": result.revision,
        "changed": result.changed,
        "dryRun": dry_run,
        "results": items,
    }


def is_dry_run(value: str | None) -> bool:
    if value is None or value == "":
        return False
    if value == "All":
        return True
    from turnout.control.api.errors import ApiError

    raise ApiError(400, f"dryRun must be 'All', not {value!r}")
