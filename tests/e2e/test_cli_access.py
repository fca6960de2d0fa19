"""Tokens, roles, contexts, ``audit``, ``status`` and ``whoami`` against a real server."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Cli


def test_token_lifecycle_and_roles(cli: Cli) -> None:
    created = cli("token", "create", "reader", "--role", "viewer", "--ttl", "30d")
    assert created.code == 0
    secret = created.out.strip()
    assert secret.startswith("tnt_") and created.out.count("\n") == 1
    assert "token 'reader'" in created.err and "role viewer" in created.err
    assert "shown only once" in created.err

    listed = cli.ok("token", "list").splitlines()
    assert listed[0].split()[:4] == ["ID", "NAME", "ROLE", "NAMESPACES"]
    reader = next(r for r in listed if " reader " in r).split()
    assert reader[2:4] == ["viewer", "*"]
    assert "in 29d" in " ".join(reader) and reader[-1] == "active"
    assert secret not in "\n".join(listed)

    as_reader = {"TURNOUT_TOKEN": secret}
    assert cli("get", "gateways", env=as_reader).code == 0
    refused = cli("apply", "-f", "-", input=_backend("x", "default"), env=as_reader)
    assert refused.code == 1
    assert refused.err == "error: token 'reader' has role viewer; this needs editor\n"
    who = cli.ok("whoami", env=as_reader)
    assert who.startswith("reader (") and "role viewer, all namespaces" in who
    assert "token from TURNOUT_TOKEN" in who

    assert cli.ok("token", "revoke", "reader").startswith("token 'reader' (")
    revoked = cli("get", "gateways", env=as_reader)
    assert revoked.code == 1
    assert revoked.err.startswith(
        f"error: the server at {cli.proc.admin} rejected the token from TURNOUT_TOKEN "
        "(token revoked)"
    )
    assert "reader" not in cli.ok("token", "list")
    assert "revoked" in next(
        r for r in cli.ok("token", "list", "--all").splitlines() if "reader" in r
    )
    dup = cli("token", "revoke", "reader")
    assert dup.code == 1 and dup.err.startswith("error: ")


def _backend(name: str, namespace: str) -> str:
    return (
        "apiVersion: turnout.dev/v1alpha1\nkind: Backend\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        "spec: {endpoints: [{address: '127.0.0.1:9'}]}\n"
    )


def test_namespace_scoped_editor(cli: Cli) -> None:
    secret = cli.ok("token", "create", "team-web", "--role", "editor", "-n", "web").strip()
    env = {"TURNOUT_TOKEN": secret}
    assert cli.ok("apply", "-f", "-", input=_backend("mine", "web"), env=env) == (
        "backend.turnout.dev/mine created\n"
    )
    run = cli("apply", "-f", "-", input=_backend("theirs", "other"), env=env)
    assert run.code == 1
    assert run.err == "error: token 'team-web' may not change namespace 'other'\n"
    run = cli("history", env=env)
    assert run.code == 1 and "limited to namespaces" in run.err


def test_token_sources_in_401_messages(cli: Cli, tmp_path: Path) -> None:
    bogus = "tnt_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
    run = cli("get", "be", "--token", bogus)
    assert run.code == 1
    assert run.err == (
        f"error: the server at {cli.proc.admin} rejected the token from --token (invalid token); "
        "check it, or create a new one with `turnout token create`\n"
    )
    nowhere = cli("get", "be", env={"TURNOUT_DATA_DIR": str(tmp_path / "no-data")})
    assert nowhere.code == 1
    assert "needs a token and none was found" in nowhere.err
    assert str(tmp_path / "no-data" / "admin-token") in nowhere.err

    stale = tmp_path / "stale-data"
    stale.mkdir()
    (stale / "admin-token").write_text(bogus + "\n")
    run = cli("get", "be", env={"TURNOUT_DATA_DIR": str(stale)})
    assert run.code == 1
    assert f"rejected the token from bootstrap token {stale / 'admin-token'}" in run.err


def test_contexts_file(cli: Cli, tmp_path: Path) -> None:
    secret = cli.ok("token", "create", "ctx-viewer", "--role", "viewer").strip()
    (tmp_path / "ctx-token").write_text(secret + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "current-context: good\n"
        "contexts:\n"
        f"- name: good\n  server: {cli.proc.admin}\n  tokenFile: ctx-token\n  namespace: web\n"
        "- name: down\n  server: http://127.0.0.1:1\n  token: tnt_x\n"
    )
    env: dict[str, str | None] = {
        "TURNOUT_CONFIG": str(config),
        "TURNOUT_SERVER": None,
        "TURNOUT_DATA_DIR": str(tmp_path / "empty"),
    }
    who = cli.ok("whoami", env=env)
    assert who.startswith("ctx-viewer (")
    assert f"tokenFile {tmp_path / 'ctx-token'} of context 'good'" in who
    # the context's namespace is the default for -n
    assert cli("get", "be", env=env).err in ("", "No resources found in web namespace.\n")
    down = cli("get", "be", "--context", "down", env=env)
    assert down.code == 1
    assert down.err == (
        "error: cannot reach the Turnout admin API at http://127.0.0.1:1 "
        "(connection refused); is `turnout serve` running?\n"
    )
    missing = cli("get", "be", "--context", "nope", env=env)
    assert missing.code == 1
    assert f"context 'nope' (--context) is not in {config} (known: down, good)" in missing.err
    # flags still win over the context
    assert cli.ok("whoami", "--server", cli.proc.admin, "--token", secret, env=env)


def test_audit_and_status(cli: Cli) -> None:
    cli("delete", "gateway", "gw")  # refused: the Gateway belongs to a file
    cli("get", "be", "--token", "tnt_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")
    table = cli.ok("audit", "--limit", "50").splitlines()
    assert table[0].split() == [
        "TIME",
        "ACTOR",
        "ACTION",
        "RESULT",
        "TARGET",
        "REVISION",
        "MESSAGE",
    ]
    assert any("token.create" in r and "ok" in r for r in table[1:])
    conflict = cli.ok("audit", "--result", "conflict").splitlines()
    assert len(conflict) >= 2 and all(" conflict " in r for r in conflict[1:])
    assert "managed by file" in conflict[1]
    unauth = cli.ok("audit", "--result", "unauthenticated", "--limit", "1").splitlines()
    assert len(unauth) == 2 and "anonymous" in unauth[1]
    mine = cli.ok("audit", "--actor", "token:bootstrap-admin", "-o", "wide").splitlines()
    assert mine[0].split()[0] == "ID" and mine[0].split()[-1] == "REMOTE"
    assert all("token:bootstrap-admin" in r for r in mine[1:])
    status = cli.ok("status").splitlines()
    assert status[0] == f"Server:         {cli.proc.admin}"
    assert any(ln.startswith("Store:") and "(sqlite, connected)" in ln for ln in status)
    assert any(ln.startswith("Workers:         ") or ln.startswith("Workers:") for ln in status)
