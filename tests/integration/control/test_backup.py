"""``turnout backup`` / ``turnout restore`` through the CLI: a SQLite store copied into a
fresh PostgreSQL database with another secrets key, compared table by table; and the
refusals (non-empty target, truncated file, missing key) that write nothing."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.integration.control.test_store_secrets import PLAIN, raw_tables, secret
from turnout.control.store import Change, Keyring, Progress, TokenRecord, open_store
from turnout.control.store.sealing import new_key_text


def restore(url: str, backup: Path, keys: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("restore", "--store", url, "-i", str(backup), "--secrets-key-file", str(keys))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    cmd = [sys.executable, "-m", "turnout", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def key_text(ring: Keyring) -> str:
    return base64.b64encode(ring.keys[ring.primary]).decode() + "\n"


async def fill(url: str, ring: Keyring) -> None:
    store = await open_store(url, keyring=ring)
    try:
        route = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": "default"},
            "spec": {"hostnames": ["shop.example"]},
        }
        await store.commit([secret("db")], actor="alice", message="first")
        await store.commit(
            [Change("put", "HTTPRoute", "default", "shop", route)], actor="bob", message="second"
        )
        await store.commit([Change("delete", "Secret", "default", "db", None)], actor="alice")
        await store.commit([secret("db", "second-value")], actor="alice")
        now = datetime.now(UTC)
        await store.create_token(
            TokenRecord(
                "t1", "ci", "editor", ["default"], "hash$abc", now, "alice", None, None, None
            )
        )
        await store.record_audit(actor="eve", action="apply", result="denied", target="x")
        await store.save_progress(Progress("ttl", ("Sandbox", "default", "s"), 3, 12.5, 1, "e"))
    finally:
        await store.close()


async def dump(url: str, ring: Keyring) -> dict[str, Any]:
    store = await open_store(url, keyring=ring)
    try:
        _, objects = await store.load()
        revisions = await store.revisions(limit=100)
        snapshots = [(await store.revision(r.number))[1] for r in revisions]
        return {
            "objects": [(o.manifest(), o.created_at, o.updated_at) for o in objects],
            "revisions": revisions,
            "snapshots": snapshots,
            "tokens": await store.tokens(include_revoked=True),
            "audit": [(a.time, a.actor, a.action, a.result, a.diff) for a in await store.audit()],
            "progress": await store.progress("ttl"),
        }
    finally:
        await store.close()


def test_sqlite_backup_restores_into_postgresql_with_another_key(
    sqlite_url: str, pg_url: str, tmp_path: Path
) -> None:
    source_key = Keyring.parse(new_key_text(), "source")
    target_text = new_key_text()
    asyncio.run(fill(sqlite_url, source_key))
    backup = tmp_path / "store.jsonl"
    done = run_cli("backup", "--store", sqlite_url, "-o", str(backup))
    assert done.returncode == 0, done.stderr
    assert "backed up" in done.stdout and "4 revisions" in done.stdout
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    text = backup.read_text()
    assert PLAIN not in text and "second-value" not in text  # Secrets stay sealed

    # The target's own key first (it re-encrypts), the source's to open the backup.
    keys = tmp_path / "target.keys"
    keys.write_text(target_text + key_text(source_key))
    done = restore(pg_url, backup, keys)
    assert done.returncode == 0, done.stderr
    target = Keyring.parse(target_text, "target")
    assert asyncio.run(dump(pg_url, target)) == asyncio.run(dump(sqlite_url, source_key))
    raw = asyncio.run(raw_tables(pg_url))
    assert "second-value" not in raw and target.primary in raw and source_key.primary not in raw

    # Once more into the same database: refused, nothing changes.
    again = run_cli(
        "restore", "--store", pg_url, "-i", str(backup), "--secrets-key-file", str(keys)
    )
    assert again.returncode != 0 and "not empty" in again.stderr


def test_restore_refusals_write_nothing(sqlite_url: str, tmp_path: Path) -> None:
    ring = Keyring.parse(new_key_text(), "source")
    asyncio.run(fill(sqlite_url, ring))
    backup = tmp_path / "store.jsonl"
    assert run_cli("backup", "--store", sqlite_url, "-o", str(backup)).returncode == 0
    target = f"sqlite:///{tmp_path / 'target.db'}"
    key_file = tmp_path / "k"
    key_file.write_text(new_key_text())
    missing = run_cli(
        "restore", "--store", target, "-i", str(backup), "--secrets-key-file", str(key_file)
    )
    assert missing.returncode != 0 and f"key id {ring.primary}" in missing.stderr

    key_file.write_text(key_text(ring))
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(backup.read_text().splitlines(keepends=True)[:-3]))
    short = run_cli(
        "restore", "--store", target, "-i", str(cut), "--secrets-key-file", str(key_file)
    )
    assert short.returncode != 0 and "cut short" in short.stderr
    # nothing was written: the full backup restores into the same target afterwards
    ok = run_cli(
        "restore", "--store", target, "-i", str(backup), "--secrets-key-file", str(key_file)
    )
    assert ok.returncode == 0, ok.stderr
