"""Audit records and API tokens in the store (real SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from turnout.control.audit import AuditLog
from turnout.control.auth import new_token
from turnout.control.store import Change, Conflict, NotFound, Store, TokenRecord
from turnout.control.tokens import AuthError, Tokens
from turnout.testing.clock import FakeClock

Runner = Callable[..., Any]


def put(name: str, spec: Any) -> Change:
    manifest = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }
    return Change("put", "HTTPRoute", "default", name, manifest)


def token(token_id: str, name: str, role: str = "editor", **kw: Any) -> TokenRecord:
    base = TokenRecord(
        id=token_id,
        name=name,
        role=role,
        namespaces=["default", "shop"],
        secret_hash="sha256:abc",
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        created_by="admin",
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )
    return dataclasses.replace(base, **kw)


def test_commits_and_record_audit_write_audit_rows(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        r = await store.commit(
            [put("shop", {"v": 1})], actor="alice", message="hello", remote="10.0.0.7"
        )
        await store.commit([put("shop", {"v": 2}), put("cart", {})], actor="bob", action="apply")
        await store.record_audit(
            actor="mallory", action="apply", result="forbidden", target="HTTPRoute x/y"
        )
        await store.record_audit(actor="anonymous", action="auth", result="unauthenticated")
        await store.record_audit(
            actor="alice", action="delete", result="not_found", revision=2, message="m", diff="d"
        )

        entries = await store.audit()
        assert [e.actor for e in entries] == ["alice", "anonymous", "mallory", "bob", "alice"]
        assert entries == sorted(entries, key=lambda e: -e.id)
        first = entries[-1]
        assert (first.action, first.result, first.target) == (
            "apply",
            "ok",
            "HTTPRoute default/shop",
        )
        assert (first.revision, first.message, first.remote) == (r.revision, "hello", "10.0.0.7")
        assert first.time.tzinfo is UTC
        assert "+++ HTTPRoute default/shop (after)" in first.diff and "+  v: 1" in first.diff
        second = entries[-2]
        assert (second.target, second.revision) == ("2 objects", 2)
        assert "-  v: 1" in second.diff and "+  v: 2" in second.diff
        assert "HTTPRoute default/cart" in second.diff
        last = entries[0]
        assert (last.result, last.revision, last.message, last.diff) == ("not_found", 2, "m", "d")

        assert [e.actor for e in await store.audit(actor="alice")] == ["alice", "alice"]
        assert [e.result for e in await store.audit(result="ok")] == ["ok", "ok"]
        assert [e.actor for e in await store.audit(actor="alice", result="ok")] == ["alice"]
        assert await store.audit(actor="nobody") == []

        # paging: newest first, then older than the last id seen
        page1 = await store.audit(limit=2)
        page2 = await store.audit(limit=2, before_id=page1[-1].id)
        page3 = await store.audit(limit=2, before_id=page2[-1].id)
        assert [e.id for e in page1 + page2 + page3] == [e.id for e in entries]
        assert await store.audit(limit=2, before_id=page3[-1].id) == []

    with_store(body)


def test_tokens(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        assert await store.has_tokens() is False
        assert await store.tokens() == []
        assert await store.token("nope") is None

        ci = token("aaaaaaaaaaaa", "ci-bot", expires_at=datetime(2027, 1, 1, tzinfo=UTC))
        await store.create_token(ci)
        await store.create_token(token("bbbbbbbbbbbb", "admin", role="admin", namespaces=[]))
        assert await store.has_tokens() is True
        assert await store.token("aaaaaaaaaaaa") == ci
        assert [t.name for t in await store.tokens()] == ["ci-bot", "admin"]

        with pytest.raises(Conflict, match="'ci-bot'"):
            await store.create_token(token("cccccccccccc", "ci-bot"))
        with pytest.raises(Conflict):  # same id
            await store.create_token(token("aaaaaaaaaaaa", "other"))

        revoked = await store.revoke_token("ci-bot")  # by name
        assert revoked.id == "aaaaaaaaaaaa" and revoked.revoked_at is not None
        assert (await store.token("aaaaaaaaaaaa")) == revoked
        assert [t.name for t in await store.tokens()] == ["admin"]
        assert [t.name for t in await store.tokens(include_revoked=True)] == ["ci-bot", "admin"]
        assert (await store.revoke_token("aaaaaaaaaaaa")) == revoked  # again, by id: unchanged
        with pytest.raises(NotFound):
            await store.revoke_token("ci-bot")  # no active token has that name now
        with pytest.raises(NotFound, match="'ghost'"):
            await store.revoke_token("ghost")

        # a revoked name can be reused
        await store.create_token(token("cccccccccccc", "ci-bot"))
        assert {t.id for t in await store.tokens()} == {"bbbbbbbbbbbb", "cccccccccccc"}

        # touch: recorded once, then at most once a minute
        before = datetime.now(UTC) - timedelta(seconds=1)
        await store.touch_token("bbbbbbbbbbbb")
        used = (await store.token("bbbbbbbbbbbb")).last_used_at  # type: ignore[union-attr]
        assert used is not None and used >= before
        await store.touch_token("bbbbbbbbbbbb")
        assert (await store.token("bbbbbbbbbbbb")).last_used_at == used  # type: ignore[union-attr]
        await store.touch_token("no-such-token")  # best effort: no error

        await store.revoke_token("bbbbbbbbbbbb")
        await store.revoke_token("cccccccccccc")
        assert await store.has_tokens() is False

    with_store(body)


def test_concurrent_token_creates_with_one_name(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        results = await asyncio.gather(
            *(store.create_token(token(f"id{i:010d}", "same")) for i in range(5)),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 1
        assert all(isinstance(r, Conflict) for r in results if r is not None)
        assert len(await store.tokens()) == 1

    with_store(body)


def test_token_expiry_follows_the_injected_clock(with_store: Runner) -> None:
    """A token's expiry is judged by the control plane's clock, not the host's."""

    async def body(store: Store) -> None:
        clock = FakeClock(wall=datetime(2030, 1, 1, tzinfo=UTC))
        tokens = Tokens(store, AuditLog(store), clock)
        made = new_token()
        rec = token(
            made.id,
            "short-lived",
            secret_hash=made.secret_hash,
            created_at=clock.now(),
            expires_at=clock.now() + timedelta(seconds=60),
        )
        await store.create_token(rec)
        header = f"Bearer {made.token}"
        # 2030 is the future for the host clock: only the injected clock can expire it
        principal = await tokens.authenticate(header, "127.0.0.1", "/api/v1/x")
        assert principal.actor == "token:short-lived"
        clock.advance(59)
        await tokens.authenticate(header, "127.0.0.1", "/api/v1/x")
        clock.advance(2)
        with pytest.raises(AuthError, match="token expired"):
            await tokens.authenticate(header, "127.0.0.1", "/api/v1/x")
        await tokens.close()

    with_store(body)
