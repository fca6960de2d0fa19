"""Who may do what: every role × every operation, namespace scopes, token lifecycle, and
the audit trail of writes and refusals — against a real server and store."""

from __future__ import annotations

import itertools
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import ServeFactory
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to

ROLES = ("viewer", "editor", "admin")
_seq = itertools.count()
Body = Callable[[int], Any]


def _none(_: int) -> None:
    return None


# (required role, method, path with {n} for a fresh name, body factory)
OPS: list[tuple[str, str, str, Body]] = [
    ("viewer", "GET", "/api/v1/kinds", _none),
    ("viewer", "GET", "/api/v1/backends", _none),
    ("viewer", "GET", "/api/v1/namespaces/default/backends", _none),
    ("viewer", "GET", "/api/v1/namespaces/default/backends/base", _none),
    ("viewer", "GET", "/api/v1/revisions", _none),
    ("viewer", "GET", "/api/v1/revisions/1", _none),
    ("viewer", "GET", "/api/v1/revisions/1/diff", _none),
    ("viewer", "GET", "/api/v1/status", _none),
    ("viewer", "GET", "/api/v1/whoami", _none),
    ("editor", "POST", "/api/v1/namespaces/default/backends", lambda n: backend(f"new{n}", 1)),
    ("editor", "PUT", "/api/v1/namespaces/default/backends/base", lambda n: backend("base", n)),
    (
        "editor",
        "PATCH",
        "/api/v1/namespaces/default/backends/base",
        lambda n: {"metadata": {"labels": {"n": str(n)}}},
    ),
    ("editor", "POST", "/api/v1/apply", lambda n: {"manifests": [backend(f"ap{n}", 1)]}),
    ("editor", "POST", "/api/v1/delete", lambda n: {"manifests": [backend(f"ap{n}", 1)]}),
    ("editor", "DELETE", "/api/v1/namespaces/default/backends/new{n}", _none),
    ("editor", "POST", "/api/v1/rollback", lambda n: {"revision": 1}),
    ("admin", "GET", "/api/v1/tokens", _none),
    ("admin", "POST", "/api/v1/tokens", lambda n: {"name": f"t{n}", "role": "viewer"}),
    ("admin", "DELETE", "/api/v1/tokens/t{n}", _none),
    ("admin", "GET", "/api/v1/audit", _none),
]


@pytest.fixture(scope="module")
def server(serve_module: ServeFactory) -> Iterator[tuple[TurnoutProcess, dict[str, str]]]:
    proc = serve_module(dump(gateway(port=free_port())))
    tokens: dict[str, str] = {}
    for role in ROLES:
        code, body = proc.api("POST", "/api/v1/tokens", {"name": f"{role}-user", "role": role})
        assert code == 201, body
        tokens[role] = body["token"]
    assert proc.api("POST", "/api/v1/namespaces/default/backends", backend("base", 1))[0] == 201
    yield proc, tokens


def _call(proc: TurnoutProcess, method: str, path: str, body: Body, token: str) -> tuple[int, Any]:
    n = next(_seq) + 2
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    return proc.api(method, path.format(n=n), body(n), token=token, content_type=ctype)


@pytest.mark.parametrize(
    ("needs", "method", "path", "body"), OPS, ids=[f"{m} {p}" for _, m, p, _ in OPS]
)
def test_role_matrix(
    server: tuple[TurnoutProcess, dict[str, str]], needs: str, method: str, path: str, body: Body
) -> None:
    proc, tokens = server
    # No token, a malformed one, a well-formed unknown one: all 401 with a Bearer challenge.
    for bad in ("", "Basic abc", "tnt_AAAAAAAAAAAA_" + "B" * 32):
        code, answer = _call(proc, method, path, body, bad)
        assert code == 401, (bad, answer)
        assert answer["status"] == "Failure" and answer["reason"] == "Unauthorized"
    for role in ROLES:
        code, answer = _call(proc, method, path, body, tokens[role])
        if ROLES.index(role) < ROLES.index(needs):
            assert code == 403, (role, answer)
            assert f"needs {needs}" in answer["message"]
        else:
            assert code not in (401, 403), (role, code, answer)
            assert code < 500, (role, code, answer)


def test_refusals_and_writes_are_audited(server: tuple[TurnoutProcess, dict[str, str]]) -> None:
    proc, tokens = server
    proc.api("GET", "/api/v1/backends", token="tnt_CCCCCCCCCCCC_" + "D" * 32)
    proc.api("POST", "/api/v1/apply", {"manifests": []}, token=tokens["viewer"])
    proc.api(
        "POST",
        "/api/v1/apply?message=audited",
        {"manifests": [backend("aud", 1)]},
        token=tokens["editor"],
    )
    deadline = time.monotonic() + 5
    while True:
        items = proc.api("GET", "/api/v1/audit?limit=500")[1]["items"]
        results = {(e["actor"], e["action"], e["result"]) for e in items}
        wanted = {
            ("anonymous", "auth", "unauthenticated"),
            ("token:viewer-user", "auth", "forbidden"),
            ("token:editor-user", "apply", "ok"),
            ("turnout serve", "token.create", "ok"),
            ("token:bootstrap-admin", "token.create", "ok"),
        }
        if wanted <= results or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert wanted <= results
    write = next(e for e in items if e["message"] == "audited")
    assert write["revision"] and "+kind: Backend" in write["diff"]
    assert write["remote"].startswith("127.0.0.1:")
    refused = [
        e for e in items if e["result"] == "forbidden" and e["target"] == "POST /api/v1/apply"
    ]
    assert refused and "needs editor" in refused[0]["message"]
    assert refused[0]["actor"] == "token:viewer-user"
    # Filters.
    only = proc.api("GET", "/api/v1/audit?result=unauthenticated")[1]["items"]
    assert only and all(e["result"] == "unauthenticated" for e in only)
    # No secret ever appears in the audit log.
    assert not any(tokens[r] in str(items) for r in ROLES)


def test_namespace_scoped_tokens(server: tuple[TurnoutProcess, dict[str, str]]) -> None:
    proc, _ = server
    code, body = proc.api(
        "POST", "/api/v1/tokens", {"name": "team-a-ci", "role": "editor", "namespaces": ["team-a"]}
    )
    assert code == 201, body
    scoped = body["token"]
    mine = backend("svc", 1, namespace="team-a")
    code, body = proc.api("POST", "/api/v1/namespaces/team-a/backends", mine, token=scoped)
    assert code == 201, body
    theirs = backend("svc", 1, namespace="team-b")
    code, body = proc.api("POST", "/api/v1/namespaces/team-b/backends", theirs, token=scoped)
    assert code == 403, body
    code, body = proc.api("POST", "/api/v1/apply", {"manifests": [mine, theirs]}, token=scoped)
    assert code == 403, body
    # Listing shows only its namespaces; the admin sees everything.
    code, body = proc.api("GET", "/api/v1/backends", token=scoped)
    assert {o["metadata"]["namespace"] for o in body["items"]} == {"team-a"}
    assert proc.api("GET", "/api/v1/namespaces/default/backends/base", token=scoped)[0] == 404
    # Whole-config operations are refused to scoped tokens.
    assert proc.api("GET", "/api/v1/revisions", token=scoped)[0] == 403
    assert proc.api("POST", "/api/v1/rollback", {"revision": 1}, token=scoped)[0] == 403


def test_token_lifecycle(server: tuple[TurnoutProcess, dict[str, str]]) -> None:
    proc, _ = server
    code, body = proc.api(
        "POST", "/api/v1/tokens", {"name": "short", "role": "viewer", "ttl": "1s"}
    )
    assert code == 201, body
    short = body["token"]
    assert proc.api("GET", "/api/v1/whoami", token=short)[1]["name"] == "short"
    code, body = proc.api("POST", "/api/v1/tokens", {"name": "short", "role": "viewer"})
    assert code == 409, body
    code, body = proc.api("POST", "/api/v1/tokens", {"name": "x", "role": "root"})
    assert code == 400 and "unknown role" in body["message"]
    time.sleep(1.2)
    code, body = proc.api("GET", "/api/v1/whoami", token=short)
    assert code == 401 and "expired" in body["message"], body

    code, body = proc.api("POST", "/api/v1/tokens", {"name": "gone", "role": "admin"})
    gone = body["token"]
    assert proc.api("GET", "/api/v1/tokens", token=gone)[0] == 200
    code, body = proc.api("DELETE", "/api/v1/tokens/gone")
    assert code == 200 and body["revoked"] is True
    code, body = proc.api("GET", "/api/v1/tokens", token=gone)
    assert code == 401 and "revoked" in body["message"], body
    listed = proc.api("GET", "/api/v1/tokens")[1]["items"]
    assert "gone" not in {t["name"] for t in listed}
    assert all("token" not in t and "secretHash" not in t for t in listed)


def test_bootstrap_token_file_is_private_and_never_logged(
    server: tuple[TurnoutProcess, dict[str, str]],
) -> None:
    proc, _ = server
    path = proc.data_dir / "admin-token"
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)
    assert proc.token.startswith("tnt_")
    assert proc.token not in proc.stderr()
    assert str(path) in proc.stderr()


def test_file_and_api_objects_together(serve: ServeFactory, port: int) -> None:
    # A route in the file may point at a Backend created through the API.
    proc = serve(dump(gateway(port=port), route("r", [to("api-made")])))
    code, body = proc.api("GET", "/api/v1/namespaces/default/httproutes/r")
    assert code == 200, body
    conds = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert conds["ResolvedRefs"] == "False"
    assert proc.api("POST", "/api/v1/namespaces/default/backends", backend("api-made", 1))[0] == 201
    body = proc.api("GET", "/api/v1/namespaces/default/httproutes/r")[1]
    conds = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert conds["ResolvedRefs"] == "True"
