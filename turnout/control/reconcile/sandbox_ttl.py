"""``SandboxTTLReconciler``: deletes a Sandbox when its ``spec.ttl`` runs out.

The expiry is counted from the Sandbox's creation (``expiry``). Before it, the reconciler
asks to be called again exactly at the expiry time; at or after it, it deletes the
Sandbox as ``system:sandbox-ttl`` (action ``expire``, message ``ttl expired``: the store
writes the audit record with the revision), naming the ``resource_version`` it saw, so a
concurrent change wins and the reconciler is simply called again for the new version.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from turnout.control.reconcile.base import Context, Result
from turnout.control.store.records import Change, StoredObject, describe
from turnout.core.durations import DurationError, parse_duration

log = logging.getLogger("turnout.control.reconcile")


def expiry(obj: StoredObject) -> datetime | None:
    """When a stored Sandbox's ``ttl`` runs out, counted from its creation."""
    spec = obj.spec if isinstance(obj.spec, dict) else {}
    ttl = spec.get("ttl")
    if not isinstance(ttl, str):
        return None
    try:
        return obj.created_at + timedelta(seconds=parse_duration(ttl))
    except DurationError:
        return None


class SandboxTTLReconciler:
    name = "sandbox-ttl"
    kinds = frozenset({"Sandbox"})
    condition = "Expiry"

    async def reconcile(self, obj: StoredObject, ctx: Context) -> Result:
        at = expiry(obj)
        if at is None:
            return Result()
        if at.timestamp() > ctx.now:
            return Result(requeue_at=at.timestamp())
        change = Change(
            "delete", obj.kind, obj.namespace, obj.name, None, expect_version=obj.resource_version
        )
        await ctx.commit([change], message="ttl expired", action="expire")
        log.info("deleted %s: its ttl expired", describe(*obj.key))
        return Result()
