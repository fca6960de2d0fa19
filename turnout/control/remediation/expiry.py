"""``MitigationExpiryReconciler``: deletes a Mitigation when its lease (``expiresAt``) ends.

The data plane forgets the mitigation with the revision that deletes it (auto-revert), so
a forgotten mitigation can never become permanent config. Before the expiry it asks to
be called again exactly then; a concurrent change wins (``expect_version``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from turnout.control.reconcile.base import Context, Result
from turnout.control.store.records import Change, StoredObject, describe

log = logging.getLogger("turnout.control.remediation")


def expires_at(obj: StoredObject) -> float | None:
    spec = obj.spec if isinstance(obj.spec, dict) else {}
    raw = spec.get("expiresAt")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class MitigationExpiryReconciler:
    name = "mitigation-expiry"
    kinds = frozenset({"Mitigation"})
    condition = "Lease"

    async def reconcile(self, obj: StoredObject, ctx: Context) -> Result:
        at = expires_at(obj)
        if at is None:
            return Result()
        if at > ctx.now:
            return Result(requeue_at=at)
        change = Change(
            "delete", obj.kind, obj.namespace, obj.name, None, expect_version=obj.resource_version
        )
        await ctx.commit([change], message="mitigation lease expired", action="expire")
        log.info("reverted %s: its lease expired", describe(*obj.key))
        return Result()
