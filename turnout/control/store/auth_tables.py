"""The store's audit and token tables (``Store`` mixes these queries in).

``audit``: who did what, when, with which result (also failed and denied requests).
``tokens``: API tokens, only a hash of the secret kept; ``touch_token`` records use at
most once a minute per token (``TOUCH_INTERVAL``), and never fails the request.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Final

from sqlalchemy import RowMapping, and_, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from turnout.control.store import tables as t
from turnout.control.store.connection import StoreBase
from turnout.control.store.errors import (
    Conflict,
    NotFound,
    StoreError,
    StoreUnavailable,
)
from turnout.control.store.records import (
    AuditEntry,
    TokenRecord,
)

log = logging.getLogger("turnout.control.store")
TOUCH_INTERVAL: Final = 60.0  # seconds between last_used_at updates of one token


class AuditAndTokens(StoreBase):
    # -- audit ---------------------------------------------------------------------------

    async def record_audit(
        self,
        *,
        actor: str,
        action: str,
        result: str,
        target: str = "",
        revision: int | None = None,
        message: str = "",
        diff: str = "",
        remote: str = "",
    ) -> None:
        query = insert(t.audit).values(
            time=self._now(),
            actor=actor,
            action=action,
            result=result,
            target=target,
            revision=revision,
            message=message,
            diff=diff,
            remote=remote,
        )
        with self._guard():
            async with self._transaction() as conn:
                await conn.execute(query)

    async def audit(
        self,
        limit: int = 100,
        before_id: int | None = None,
        actor: str | None = None,
        result: str | None = None,
    ) -> list[AuditEntry]:
        """Audit entries newest first; ``before_id`` pages to older ones."""
        query = select(t.audit).order_by(t.audit.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(t.audit.c.id < before_id)
        if actor is not None:
            query = query.where(t.audit.c.actor == actor)
        if result is not None:
            query = query.where(t.audit.c.result == result)
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [_audit(r._mapping) for r in rows]

    # -- tokens --------------------------------------------------------------------------

    async def create_token(self, rec: TokenRecord) -> None:
        """Store a new token; ``Conflict`` when a non-revoked token has the same name."""
        taken = select(t.tokens.c.id).where(
            or_(
                t.tokens.c.id == rec.id,
                and_(t.tokens.c.name == rec.name, t.tokens.c.revoked_at.is_(None)),
            )
        )
        values = {
            "id": rec.id,
            "name": rec.name,
            "role": rec.role,
            "namespaces": list(rec.namespaces),
            "secret_hash": rec.secret_hash,
            "created_at": rec.created_at,
            "created_by": rec.created_by,
            "expires_at": rec.expires_at,
            "revoked_at": rec.revoked_at,
            "last_used_at": rec.last_used_at,
        }
        conflict = Conflict(f"a token named {rec.name!r} exists already")
        try:
            with self._guard():
                async with self._transaction() as conn:
                    if (await conn.execute(taken)).first() is not None:
                        raise conflict
                    await conn.execute(insert(t.tokens).values(values))
        except StoreError as exc:
            # Two creates racing past the check: the unique index decides.
            if isinstance(exc.__cause__, IntegrityError):
                raise conflict from exc.__cause__
            raise

    async def token(self, token_id: str) -> TokenRecord | None:
        with self._guard():
            async with self._connection(self._engine) as conn:
                row = (
                    await conn.execute(select(t.tokens).where(t.tokens.c.id == token_id))
                ).first()
        return None if row is None else _token(row._mapping)

    async def tokens(self, include_revoked: bool = False) -> list[TokenRecord]:
        query = select(t.tokens).order_by(t.tokens.c.created_at, t.tokens.c.id)
        if not include_revoked:
            query = query.where(t.tokens.c.revoked_at.is_(None))
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [_token(r._mapping) for r in rows]

    async def revoke_token(self, id_or_name: str) -> TokenRecord:
        """Revoke by id, or by the name of a non-revoked token; returns the record.
        Revoking a revoked token (by id) returns it unchanged."""
        by_id = select(t.tokens).where(t.tokens.c.id == id_or_name)
        by_name = select(t.tokens).where(
            t.tokens.c.name == id_or_name, t.tokens.c.revoked_at.is_(None)
        )
        with self._guard():
            async with self._transaction() as conn:
                row = (await conn.execute(by_id)).first() or (await conn.execute(by_name)).first()
                if row is None:
                    raise NotFound(f"token {id_or_name!r} not found")
                rec = _token(row._mapping)
                if rec.revoked_at is not None:
                    return rec
                now = self._now()
                await conn.execute(
                    update(t.tokens)
                    .where(t.tokens.c.id == rec.id, t.tokens.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
        return dataclasses.replace(rec, revoked_at=now)

    async def touch_token(self, token_id: str) -> None:
        """Record that a token was used: at most once a minute, errors only logged."""
        mono = self.clock.monotonic()
        last = self._touched.get(token_id)
        if last is not None and mono - last < TOUCH_INTERVAL:
            return
        self._touched[token_id] = mono
        if len(self._touched) > 10_000:
            self._touched = {token_id: mono}
        now = self._now()
        query = (
            update(t.tokens)
            .where(
                t.tokens.c.id == token_id,
                or_(
                    t.tokens.c.last_used_at.is_(None),
                    t.tokens.c.last_used_at < now - timedelta(seconds=TOUCH_INTERVAL),
                ),
            )
            .values(last_used_at=now)
        )
        try:
            with self._guard():
                async with self._transaction() as conn:
                    await conn.execute(query)
        except StoreError as exc:
            level = logging.DEBUG if isinstance(exc, StoreUnavailable) else logging.WARNING
            log.log(level, "store: cannot record the use of token %s: %s", token_id, exc)

    async def has_tokens(self) -> bool:
        """Whether any non-revoked token exists."""
        query = select(exists().where(t.tokens.c.revoked_at.is_(None)))
        with self._guard():
            async with self._connection(self._engine) as conn:
                return bool((await conn.execute(query)).scalar())


def _audit(m: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=int(m["id"]),
        time=m["time"],
        actor=m["actor"],
        action=m["action"],
        result=m["result"],
        target=m["target"],
        revision=m["revision"],
        message=m["message"],
        diff=m["diff"],
        remote=m["remote"],
    )


def _token(m: RowMapping) -> TokenRecord:
    return TokenRecord(
        id=m["id"],
        name=m["name"],
        role=m["role"],
        namespaces=list(m["namespaces"] or []),
        secret_hash=m["secret_hash"],
        created_at=m["created_at"],
        created_by=m["created_by"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        last_used_at=m["last_used_at"],
    )
