"""Tokens, the audit log, ``whoami`` and ``status``.

Token secrets are returned once, by ``POST /tokens``; listings show the id, name, role,
namespaces and times, never the hash. Revoking removes the token from this replica's
cache at once; other replicas stop accepting it within the cache lifetime (5 s).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse

from turnout.control.api.deps import Admin, Control, Viewer, remote_of
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.auth import Role, new_token
from turnout.control.store.errors import Conflict
from turnout.control.store.repository import AuditEntry, TokenRecord, rfc3339
from turnout.core.clock import utcnow
from turnout.core.durations import DurationError, parse_duration

router = APIRouter(tags=["access"], responses=FAILURES)

_NAME = re.compile(r"[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?")


def _maybe_time(t: datetime | None) -> str | None:
    return None if t is None else rfc3339(t)


def token_json(rec: TokenRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "role": rec.role,
        "namespaces": list(rec.namespaces),
        "createdAt": rfc3339(rec.created_at),
        "createdBy": rec.created_by,
        "expiresAt": _maybe_time(rec.expires_at),
        "lastUsedAt": _maybe_time(rec.last_used_at),
        "revoked": rec.revoked_at is not None,
    }


def audit_json(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "time": rfc3339(e.time),
        "actor": e.actor,
        "action": e.action,
        "result": e.result,
        "target": e.target,
        "revision": e.revision,
        "message": e.message,
        "diff": e.diff,
        "remote": e.remote,
    }


_DAYS = re.compile(r"([0-9]{1,5})([dw])")


def _ttl_seconds(ttl: str) -> float:
    """Token lifetimes are long: besides durations (``12h``), accept ``30d`` and ``2w``."""
    m = _DAYS.fullmatch(ttl.strip())
    if m:
        return int(m.group(1)) * (86_400 if m.group(2) == "d" else 604_800)
    try:
        return parse_duration(ttl)
    except DurationError as exc:
        raise ApiError(400, f"ttl: {exc}; or days/weeks such as 30d, 2w") from None


@router.get("/tokens")
async def list_tokens(
    control: Control, _: Admin, revoked: Annotated[bool, Query()] = False
) -> dict[str, Any]:
    return {"items": [token_json(t) for t in await control.store.tokens(include_revoked=revoked)]}


@router.post("/tokens", status_code=201)
async def create_token(
    request: Request,
    control: Control,
    principal: Admin,
    name: Annotated[str, Body(embed=True, min_length=1, max_length=63)],
    role: Annotated[str, Body(embed=True)] = "viewer",
    namespaces: Annotated[list[str], Body(embed=True, max_length=100)] = [],  # noqa: B006
    ttl: Annotated[str | None, Body(embed=True, max_length=32)] = None,
) -> JSONResponse:
    """Create a token; the response is the only place its secret ever appears."""
    if not _NAME.fullmatch(name):
        raise ApiError(400, f"token name {name!r}: lowercase letters, digits, '-', '_' and '.'")
    try:
        parsed_role = Role.parse(role)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    for ns in namespaces:
        if not _NAME.fullmatch(ns):
            raise ApiError(400, f"{ns!r} is not a namespace name")
    now = utcnow(control.tokens.clock)
    expires = None
    if ttl:
        seconds = _ttl_seconds(ttl)
        if seconds <= 0:
            raise ApiError(400, "ttl must be positive")
        expires = now + timedelta(seconds=seconds)
    tok = new_token()
    rec = TokenRecord(
        id=tok.id,
        name=name,
        role=parsed_role.label,
        namespaces=sorted(set(namespaces)),
        secret_hash=tok.secret_hash,
        created_at=now,
        created_by=principal.actor,
        expires_at=expires,
        revoked_at=None,
        last_used_at=None,
    )
    try:
        await control.store.create_token(rec)
    except Conflict as exc:
        await control.audit(
            principal, "token.create", "conflict", f"token {name}", str(exc), remote_of(request)
        )
        raise
    await control.store.record_audit(
        actor=principal.actor,
        action="token.create",
        result="ok",
        target=f"token {name}",
        message=f"role {rec.role}"
        + (f", namespaces {', '.join(rec.namespaces)}" if rec.namespaces else ""),
        remote=remote_of(request),
    )
    return JSONResponse({**token_json(rec), "token": tok.token}, status_code=201)


@router.delete("/tokens/{id_or_name}")
async def revoke_token(
    id_or_name: str, request: Request, control: Control, principal: Admin
) -> dict[str, Any]:
    rec = await control.store.revoke_token(id_or_name)
    control.forget_token(rec.id)
    await control.store.record_audit(
        actor=principal.actor,
        action="token.revoke",
        result="ok",
        target=f"token {rec.name}",
        remote=remote_of(request),
    )
    return token_json(rec)


@router.get("/audit")
async def audit_log(
    control: Control,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    result: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    entries = await control.store.audit(limit=limit, before_id=before, actor=actor, result=result)
    return {"items": [audit_json(e) for e in entries]}


@router.get("/whoami")
async def whoami(principal: Viewer) -> dict[str, Any]:
    return {
        "id": principal.id,
        "name": principal.name,
        "role": principal.role.label,
        "namespaces": list(principal.namespaces),
    }


@router.get("/status")
async def status(control: Control, _: Viewer) -> dict[str, Any]:
    runtime = control.runtime()
    return {
        **runtime,
        "storeRevision": control.store_revision,
        "store": {
            "url": control.store.url,
            "dialect": control.store.dialect,
            "connected": control.store_connected,
        },
        "leader": control.is_leader,
    }
