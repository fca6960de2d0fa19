"""``AuditLog``: records failed and refused operations without holding up the request.

Successful writes are audited by the store inside their commit; everything else (denied
requests, invalid tokens) is recorded here in a background task, and dropped with a
warning when the store is so slow that more than ``MAX_PENDING`` records are waiting.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from turnout.control.auth import Principal
from turnout.control.store.repository import Store
from turnout.core.tasks import spawn

log = logging.getLogger("turnout.control")

MAX_PENDING: Final = 256


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.tasks: set[asyncio.Task[Any]] = set()

    async def audit(
        self,
        principal: Principal | None,
        action: str,
        result: str,
        target: str = "",
        message: str = "",
        remote: str = "",
    ) -> None:
        """Record a failed operation (successful writes are audited by the store)."""
        actor = principal.actor if principal is not None else "anonymous"
        self.record(actor, action, result, target, message, remote)

    def record(
        self, actor: str, action: str, result: str, target: str, message: str, remote: str
    ) -> None:
        if len(self.tasks) > MAX_PENDING:  # the store is slow or down: do not pile up writes
            log.warning("audit: dropped %s %s by %s (%s)", action, result, actor, target)
            return
        spawn(self._record(actor, action, result, target, message, remote), keep=self.tasks)

    async def _record(
        self, actor: str, action: str, result: str, target: str, message: str, remote: str
    ) -> None:
        try:
            await self.store.record_audit(
                actor=actor,
                action=action,
                result=result,
                target=target,
                message=message,
                remote=remote,
            )
        except Exception as exc:
            log.warning("audit: cannot record %s %s by %s: %s", action, result, actor, exc)
