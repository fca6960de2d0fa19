"""``Tokens``: who is calling (bearer token → ``Principal``), and the bootstrap admin token.

Every token (a handful) is kept in memory and refreshed every ``TOKEN_CACHE_SECONDS / 2``
(``run``), so that reads keep working with any valid token while the store is away, and a
token revoked on another replica stops working here within ``TOKEN_CACHE_SECONDS``. A
token not in the cache is read from the store. Failed authentications are audited; the
use of a token is recorded in the background (at most once a minute, by the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from turnout.control.audit import AuditLog
from turnout.control.auth import (
    Principal,
    Role,
    is_expired,
    new_token,
    secret_matches,
    split_token,
)
from turnout.control.store.errors import Conflict, StoreUnavailable
from turnout.control.store.repository import Store, TokenRecord
from turnout.core.clock import SYSTEM_CLOCK, Clock, utcnow
from turnout.core.paths import ADMIN_TOKEN_FILE
from turnout.core.tasks import spawn

log = logging.getLogger("turnout.control")

BOOTSTRAP_TOKEN_NAME: Final = "bootstrap-admin"
TOKEN_CACHE_SECONDS: Final = 5.0


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Tokens:
    def __init__(self, store: Store, audit: AuditLog, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.audit_log = audit
        self.clock = clock
        self._cache: dict[str, tuple[TokenRecord, float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def authenticate(self, header: str | None, remote: str, target: str) -> Principal:
        """The caller of an API request, or ``AuthError`` (401). Failures are audited."""
        audit = self.audit_log.audit
        if not header:
            await audit(None, "auth", "unauthenticated", target, "no token", remote)
            raise AuthError(401, "authentication required: send 'Authorization: Bearer <token>'")
        scheme, _, token = header.partition(" ")
        parts = split_token(token.strip()) if scheme.lower() == "bearer" else None
        if parts is None:
            await audit(None, "auth", "unauthenticated", target, "malformed token", remote)
            raise AuthError(401, "invalid token")
        token_id, secret = parts
        rec = await self._record(token_id)
        problem = None
        if rec is None or not secret_matches(secret, rec.secret_hash):
            problem = "invalid token"
        elif rec.revoked_at is not None:
            problem = "token revoked"
        elif is_expired(rec.expires_at, utcnow(self.clock)):
            problem = "token expired"
        if problem is not None or rec is None:
            actor = f"token:{rec.name}" if rec is not None else "anonymous"
            self.audit_log.record(actor, "auth", "unauthenticated", target, problem or "", remote)
            raise AuthError(401, problem or "invalid token")
        spawn(self._touch(token_id), keep=self._tasks)
        return Principal(rec.id, rec.name, Role.parse(rec.role), tuple(rec.namespaces))

    async def _record(self, token_id: str) -> TokenRecord | None:
        cached = self._cache.get(token_id)
        if cached is not None and self.clock.monotonic() - cached[1] < TOKEN_CACHE_SECONDS:
            return cached[0]
        try:
            rec = await self.store.token(token_id)
        except StoreUnavailable:
            if cached is not None:  # keep answering reads while the store is away
                return cached[0]
            raise
        if rec is None:
            self._cache.pop(token_id, None)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token_id] = (rec, self.clock.monotonic())
        return rec

    async def run(self) -> None:
        """Refresh the cache until cancelled."""
        while True:
            try:
                records = await self.store.tokens(include_revoked=True)
            except Exception as exc:
                log.debug("token refresh failed: %s", exc)
            else:
                now = self.clock.monotonic()
                self._cache = {r.id: (r, now) for r in records}
            await asyncio.sleep(TOKEN_CACHE_SECONDS / 2)

    def forget(self, token_id: str) -> None:
        self._cache.pop(token_id, None)

    async def _touch(self, token_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.store.touch_token(token_id)

    async def bootstrap(self, data_dir: Path | None) -> None:
        """Create an admin token and write it to the data dir, when there is none."""
        if data_dir is None or await self.store.has_tokens():
            return
        tok = new_token()
        rec = TokenRecord(
            id=tok.id,
            name=BOOTSTRAP_TOKEN_NAME,
            role="admin",
            namespaces=[],
            secret_hash=tok.secret_hash,
            created_at=datetime.fromtimestamp(self.clock.time(), UTC),
            created_by="turnout serve",
            expires_at=None,
            revoked_at=None,
            last_used_at=None,
        )
        try:
            await self.store.create_token(rec)
        except Conflict:  # another replica created it at the same moment
            return
        path = data_dir / ADMIN_TOKEN_FILE
        write_secret(path, tok.token + "\n")
        await self.store.record_audit(
            actor="turnout serve",
            action="token.create",
            result="ok",
            target=f"token {BOOTSTRAP_TOKEN_NAME}",
            message=f"bootstrap admin token written to {path}",
        )
        log.info("bootstrap admin token written to %s (mode 0600)", path)

    async def close(self, grace: float = 1.0) -> None:
        """Let pending ``last_used_at`` touches finish (bounded by ``grace``), then cancel.

        Cancelling a touch in the middle of its SQLite statement left aiosqlite's connection
        close waiting for ever, so a touch gets the chance to complete first."""
        pending = list(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically, never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
