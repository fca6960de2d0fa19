"""Pausing and resuming an Environment's release queue (``turnout release queue ENV
--pause|--resume``, ``POST /api/v1/release-queues/{env}/pause|resume``).

The pause is the Environment's ``QUEUE_ANNOTATION`` (``{"paused", "by", "reason",
"at"}``): a revision of the Environment, so it is persisted, audited (actor, action
``release-queue-pause``/``-resume``, the reason) and seen by whichever replica leads. A
paused queue starts no queued release; live ones go on (pause those one by one). Like
the release commands, it is idempotent and retried on a write conflict.
"""

from __future__ import annotations

import json
from typing import Any

from turnout.config.model.environment import QUEUE_ANNOTATION
from turnout.control.auth import Principal
from turnout.control.releases.commands import ATTEMPTS, ReleaseHost
from turnout.control.releases.queue import queue_pause
from turnout.control.store.errors import Conflict
from turnout.control.store.records import Change


async def set_paused(
    host: ReleaseHost,
    environment: str,
    paused: bool,
    principal: Principal,
    reason: str = "",
    *,
    now: float,
) -> tuple[bool, dict[str, Any] | None]:
    """(changed, the pause now in force or None)."""
    for attempt in range(ATTEMPTS):
        obj = await host.store.get("Environment", "", environment)
        current = queue_pause(obj.annotations)
        if (current is not None) == paused:
            return False, current
        said: dict[str, Any] = {
            "paused": paused,
            "by": principal.actor,
            "reason": reason,
            "at": now,
        }
        manifest = obj.manifest(with_status=False)
        meta = manifest["metadata"]
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            QUEUE_ANNOTATION: json.dumps(said, sort_keys=True),
        }
        verb = "pause" if paused else "resume"
        message = f"{verb} the release queue of {environment}" + (f": {reason}" if reason else "")
        change = Change(
            "put", "Environment", "", environment, manifest, expect_version=obj.resource_version
        )
        try:
            await host.write(
                [change],
                principal,
                message=message,
                action=f"release-queue-{verb}",
            )
        except Conflict:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return True, said if paused else None
    raise AssertionError("unreachable")
