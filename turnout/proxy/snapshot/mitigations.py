"""The live Mitigations of a revision, per HTTPRoute, summed for the route's filter.

Shed shares add up (capped at 100 %), blocked clients are joined. A Mitigation already
past its ``expiresAt`` is left out, so a replica that recompiles after the lease ended
reverts even before the control plane's expiry deletes it.
"""

from __future__ import annotations

import time
from datetime import datetime

from turnout.config.configset import ConfigSet
from turnout.config.model.remediation import MitigationObject
from turnout.proxy.filters.mitigation import MitigationFilter


def mitigation_filters(
    config: ConfigSet, now: float | None = None
) -> dict[tuple[str, str], MitigationFilter]:
    """(namespace, route name) -> the filter answering for its live Mitigations."""
    now = time.time() if now is None else now
    shed: dict[tuple[str, str], int] = {}
    clients: dict[tuple[str, str], list[str]] = {}
    for r in config.resources:
        obj = r.obj
        if not isinstance(obj, MitigationObject):
            continue
        expires = datetime.fromisoformat(obj.spec.expires_at.replace("Z", "+00:00"))
        if expires.timestamp() <= now:
            continue
        key = (obj.metadata.namespace, obj.spec.target_ref.name)
        if obj.spec.shed is not None:
            shed[key] = shed.get(key, 0) + obj.spec.shed.percent
        clients.setdefault(key, []).extend(obj.spec.block_clients)
    return {
        key: MitigationFilter(min(shed.get(key, 0), 100), tuple(clients.get(key, ())))
        for key in shed.keys() | clients.keys()
    }
