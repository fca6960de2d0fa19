"""Secrets at rest on real SQLite and PostgreSQL: what the tables hold, migration of
plaintext stores, a store opened without (or with the wrong) key, key rotation."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import ServeFactory
from turnout.control.store import Change, Keyring, SecretsKeyError, open_store
from turnout.control.store.engine import normalise_url
from turnout.control.store.sealing import new_key_text
from turnout.testing import TurnoutProcess
from turnout.testing.manifests import dump, gateway

PLAIN = "hunter2-at-rest"


def secret(name: str, value: str = PLAIN) -> Change:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "Opaque",
        "stringData": {"password": value},
    }
    return Change("put", "Secret", "default", name, manifest)


async def raw_tables(url: str) -> str:
    """Everything the objects and revisions tables hold, as the database returns it."""
    engine = create_async_engine(normalise_url(url))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT kind, spec FROM objects"))).all()
            snaps = (await conn.execute(text("SELECT snapshot FROM revisions"))).all()
    finally:
        await engine.dispose()
    return repr(rows) + repr(snaps)


async def write(url: str, keyring: Keyring | None, *changes: Change) -> None:
    store = await open_store(url, keyring=keyring)
    try:
        await store.commit(list(changes), actor="test")
    finally:
        await store.close()


async def read(url: str, keyring: Keyring | None) -> tuple[Any, list[dict[str, Any]]]:
    store = await open_store(url, keyring=keyring)
    try:
        obj = await store.get("Secret", "default", "db")
        _, manifests = await store.revision(await store.latest_revision())
        return obj.spec, manifests
    finally:
        await store.close()


def test_secrets_are_sealed_at_rest_and_rotate(db_url: str) -> None:
    k1 = Keyring.parse(new_key_text(), "k1")
    k2_text = new_key_text()

    async def main() -> None:
        # A store from before encryption: plaintext, as before.
        await write(db_url, None, secret("db"))
        assert PLAIN in await raw_tables(db_url)
        # First start with a key: every Secret, current and in revisions, gets sealed.
        await write(db_url, k1, secret("other", "second-plain"))
        raw = await raw_tables(db_url)
        assert PLAIN not in raw and "second-plain" not in raw and "$sealed" in raw
        spec, manifests = await read(db_url, k1)
        assert spec["stringData"] == {"password": PLAIN}
        assert {"password": PLAIN} in [m.get("stringData") for m in manifests]
        # Without the key, or with another one: a clear error at open.
        with pytest.raises(SecretsKeyError, match=r"no secrets key was given.*--secrets-key"):
            await open_store(db_url)
        with pytest.raises(SecretsKeyError, match=rf"key id {k1.primary}.*not among"):
            await open_store(db_url, keyring=Keyring.parse(new_key_text(), "stranger"))
        # Rotation: the new key first, the old one kept to open; then the new one alone.
        both = Keyring.parse(k2_text + new_key_text_of(k1), "k2+k1")
        await read(db_url, both)
        k2 = Keyring.parse(k2_text, "k2")
        spec, _ = await read(db_url, k2)
        assert spec["stringData"] == {"password": PLAIN}
        assert PLAIN not in await raw_tables(db_url)
        with pytest.raises(SecretsKeyError, match=k2.primary):
            await open_store(db_url, keyring=k1)

    asyncio.run(main())


def new_key_text_of(ring: Keyring) -> str:
    import base64

    return base64.b64encode(ring.keys[ring.primary]).decode() + "\n"


def test_serve_generates_a_private_key_and_refuses_a_foreign_one(
    serve: ServeFactory, port: int, tmp_path: Path
) -> None:
    """The embedded default: ``turnout serve`` with no key makes one (0600) in its data
    dir; a Secret applied through the API never reaches the SQLite files in clear; the
    same data dir started with another key refuses to start, naming the fix."""
    proc = serve(dump(gateway(port=port)))
    manifest = secret("db").manifest
    code, body = proc.api("POST", "/api/v1/apply", {"manifests": [manifest]})
    assert code == 200, body
    key_file = proc.data_dir / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = b"".join(p.read_bytes() for p in proc.data_dir.glob("turnout.db*"))
    assert b"Secret" in stored and PLAIN.encode() not in stored
    proc.stop()

    other = TurnoutProcess(
        proc.config, data_dir=proc.data_dir, env={"TURNOUT_SECRETS_KEY": new_key_text()}
    )
    other.start(expect_ready=False)
    try:
        assert other.proc is not None and other.proc.wait(timeout=60) == 2
        assert "not among the keys from TURNOUT_SECRETS_KEY" in other.stderr()
    finally:
        other.stop()


def test_a_replica_without_the_new_key_answers_503_naming_the_fix(
    serve: ServeFactory, port: int
) -> None:
    """A rotation that reached the store but not this process's key file: writes are
    ``503 SecretsKeyMissing`` with the message, not an internal error."""
    proc = serve(dump(gateway(port=port)))
    code, body = proc.api("POST", "/api/v1/apply", {"manifests": [secret("db").manifest]})
    assert code == 200, body
    old = (proc.data_dir / "secrets.key").read_text()
    url = f"sqlite:///{proc.data_dir / 'turnout.db'}"

    async def rotate() -> None:
        store = await open_store(url, keyring=Keyring.parse(new_key_text() + old, "new+old"))
        await store.close()

    asyncio.run(rotate())
    code, body = proc.api("POST", "/api/v1/apply", {"manifests": [secret("db", "v2").manifest]})
    assert code == 503, body
    assert body["reason"] == "SecretsKeyMissing"
    assert "not among the keys" in body["message"]
