"""The admin API changes what the gateway serves: CRUD, conflicts, dry runs, validation,
file ownership, revisions, rollback and watch — over real sockets against a real server
with a SQLite store in its data dir."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing import TurnoutProcess
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get


def _pod(port: int, path: str = "/") -> tuple[int, str]:
    reply = get(port, path)
    if reply.status != 200:
        return reply.status, ""
    return 200, reply.json()["pod"]


@pytest.fixture
def gw(serve: ServeFactory, port: int) -> tuple[TurnoutProcess, int]:
    # The Gateway comes from a file; routes and backends come through the API.
    return serve(dump(gateway(port=port)), workers=2), port


def test_created_objects_are_served_and_replace_delete_take_effect(
    gw: tuple[TurnoutProcess, int], echo: EchoFactory
) -> None:
    proc, port = gw
    a, b = echo("a-0"), echo("b-0")
    code, body = proc.api("POST", "/api/v1/namespaces/default/backends", backend("shop", a.port))
    assert code == 201, body
    assert body["metadata"]["resourceVersion"] == "1"
    assert body["metadata"]["generation"] == 1
    assert body["metadata"]["annotations"]["turnout.dev/owner"] == "api"
    code, body = proc.api("POST", "/api/v1/namespaces/default/httproutes", route("r", [to("shop")]))
    assert code == 201, body
    wait_until(lambda: _pod(port) == (200, "a-0"), 5.0, "the API-created route to serve")

    # Replace: the backend now points at b; generation and resourceVersion move on.
    code, current = proc.api("GET", "/api/v1/namespaces/default/backends/shop")
    assert code == 200
    new = backend("shop", b.port)
    new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    code, body = proc.api("PUT", "/api/v1/namespaces/default/backends/shop", new)
    assert code == 200, body
    assert body["metadata"]["generation"] == 2
    assert body["metadata"]["resourceVersion"] == "3"
    wait_until(lambda: _pod(port) == (200, "b-0"), 5.0, "the replaced backend to serve")

    # A stale resourceVersion is a conflict and changes nothing.
    stale = backend("shop", a.port)
    stale["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    code, body = proc.api("PUT", "/api/v1/namespaces/default/backends/shop", stale)
    assert code == 409, body
    assert body["status"] == "Failure" and body["reason"] == "Conflict"
    assert _pod(port) == (200, "b-0")

    # Merge patch: labels only, so the generation stays.
    code, body = proc.api(
        "PATCH",
        "/api/v1/namespaces/default/backends/shop",
        {"metadata": {"labels": {"team": "checkout"}}},
        content_type="application/merge-patch+json",
    )
    assert code == 200, body
    assert body["metadata"]["labels"] == {"team": "checkout"}
    assert body["metadata"]["generation"] == 2

    code, body = proc.api("DELETE", "/api/v1/namespaces/default/httproutes/r")
    assert code == 200 and body["status"] == "Success", body
    wait_until(lambda: _pod(port)[0] == 404, 5.0, "the deleted route to stop serving")
    code, body = proc.api("GET", "/api/v1/namespaces/default/httproutes/r")
    assert code == 404 and body["reason"] == "NotFound"


def test_create_twice_is_a_conflict_and_missing_objects_are_404(
    gw: tuple[TurnoutProcess, int],
) -> None:
    proc, _ = gw
    assert proc.api("POST", "/api/v1/namespaces/default/backends", backend("x", 1))[0] == 201
    code, body = proc.api("POST", "/api/v1/namespaces/default/backends", backend("x", 2))
    assert code == 409, body
    code, body = proc.api("PUT", "/api/v1/namespaces/default/backends/nope", backend("nope", 1))
    assert code == 404, body
    code, body = proc.api("DELETE", "/api/v1/namespaces/default/backends/nope")
    assert code == 404, body
    code, body = proc.api("GET", "/api/v1/widgets")
    assert code == 404 and "unknown resource type" in body["message"]


def test_invalid_writes_are_located_and_change_nothing(gw: tuple[TurnoutProcess, int]) -> None:
    proc, _ = gw
    bad = route("r", [to("shop")])
    bad["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Glob"
    bad["spec"]["bogus"] = 1
    code, body = proc.api("POST", "/api/v1/namespaces/default/httproutes", bad)
    assert code == 422, body
    paths = {p["path"] for p in body["problems"]}
    assert "spec.rules[0].matches[0].path.type" in paths
    assert "spec.bogus" in paths
    # YAML apply: problems name the request line.
    text = dump(backend("ok", 1), {**backend("bad", 2), "spec": {"endpoints": "nope"}})
    code, body = proc.api("POST", "/api/v1/apply", text, content_type="application/yaml")
    assert code == 422, body
    assert body["problems"][0]["source"] == "<request>"
    assert body["problems"][0]["line"] and body["problems"][0]["line"] > 5
    # Semantic (cross-object) errors too: a listener on a port another Gateway uses
    # would be caught the same way; here a regex that does not compile.
    broken = route("re", [{"matches": [{"path": {"type": "RegularExpression", "value": "("}}]}])
    code, body = proc.api("POST", "/api/v1/namespaces/default/httproutes", broken)
    assert code == 422, body
    # The same through a YAML apply: the whole-config check names the request's line.
    text = dump(backend("ok", 1), broken)
    code, body = proc.api("POST", "/api/v1/apply", text, content_type="application/yaml")
    assert code == 422, body
    (problem,) = body["problems"]
    assert problem["source"] == "<request>", problem
    assert text.splitlines()[problem["line"] - 1].strip().startswith("value:"), problem
    code, body = proc.api("GET", "/api/v1/revisions")
    assert code == 200 and body["items"] == [], body
    code, body = proc.api("GET", "/api/v1/backends")
    assert body["items"] == []


def test_dry_run_validates_and_stores_nothing(gw: tuple[TurnoutProcess, int]) -> None:
    proc, _ = gw
    code, body = proc.api(
        "POST", "/api/v1/apply?dryRun=All", {"manifests": [backend("shop", 1), backend("b", 2)]}
    )
    assert code == 200, body
    assert body["dryRun"] is True
    assert [r["action"] for r in body["results"]] == ["created", "created"]
    assert "+kind: Backend" in body["results"][0]["diff"]
    assert proc.api("GET", "/api/v1/backends")[1]["items"] == []
    assert proc.api("GET", "/api/v1/revisions")[1]["items"] == []


def test_objects_from_files_are_listed_but_owned_by_their_file(
    gw: tuple[TurnoutProcess, int],
) -> None:
    proc, port = gw
    code, body = proc.api("GET", "/api/v1/gateways")
    assert code == 200
    (item,) = body["items"]
    owner = item["metadata"]["annotations"]["turnout.dev/owner"]
    assert owner.startswith("file:") and owner.endswith("gateway.yaml:1")
    changed = gateway(port=port + 1)
    code, body = proc.api("PUT", "/api/v1/namespaces/default/gateways/gw", changed)
    assert code == 409, body
    assert body["reason"] == "OwnedByFile"
    assert "gateway.yaml" in body["message"] and "change the file" in body["message"]
    code, body = proc.api("DELETE", "/api/v1/namespaces/default/gateways/gw")
    assert code == 409, body


def test_apply_reports_created_configured_unchanged(gw: tuple[TurnoutProcess, int]) -> None:
    proc, _ = gw
    objs = [backend("one", 1), backend("two", 2)]
    code, body = proc.api("POST", "/api/v1/apply?message=first", {"manifests": objs})
    assert code == 200, body
    assert [r["action"] for r in body["results"]] == ["created", "created"]
    assert body["revision"] == 1
    objs[1] = backend("two", 3)
    code, body = proc.api("POST", "/api/v1/apply", {"manifests": objs})
    assert [r["action"] for r in body["results"]] == ["unchanged", "configured"]
    assert body["revision"] == 2
    code, body = proc.api("POST", "/api/v1/apply", {"manifests": objs})
    assert [r["action"] for r in body["results"]] == ["unchanged", "unchanged"]
    assert body["changed"] is False and body["revision"] == 2
    # The shorthand and the long form are the same object.
    short = backend("one", 1, loadBalancer="round_robin")
    assert proc.api("POST", "/api/v1/apply", {"manifests": [short]})[1]["revision"] == 3
    long = backend("one", 1, loadBalancer={"type": "round_robin"})
    code, body = proc.api("POST", "/api/v1/apply", {"manifests": [long]})
    assert code == 200 and body["results"][0]["action"] == "unchanged", body
    code, body = proc.api("GET", "/api/v1/revisions")
    assert [i["revision"] for i in body["items"]] == [3, 2, 1]
    assert body["metadata"]["current"] == 3
    assert body["items"][-1]["message"] == "first"


def test_revisions_diff_and_rollback_change_traffic(
    gw: tuple[TurnoutProcess, int], echo: EchoFactory
) -> None:
    proc, port = gw
    a, b = echo("a-0"), echo("b-0")
    rev1 = proc.api(
        "POST", "/api/v1/apply", {"manifests": [backend("shop", a.port), route("r", [to("shop")])]}
    )[1]["revision"]
    wait_until(lambda: _pod(port) == (200, "a-0"), 5.0, "revision 1 to serve")
    proc.api("POST", "/api/v1/apply", {"manifests": [backend("shop", b.port)]})
    wait_until(lambda: _pod(port) == (200, "b-0"), 5.0, "revision 2 to serve")

    code, body = proc.api("GET", f"/api/v1/revisions/{rev1}/diff")
    assert code == 200, body
    assert body["changes"] == [
        {"action": "configured", "kind": "Backend", "namespace": "default", "name": "shop"}
    ]
    assert f"-  - address: 127.0.0.1:{a.port}" in body["diff"]
    assert f"+  - address: 127.0.0.1:{b.port}" in body["diff"]
    code, body = proc.api("GET", f"/api/v1/revisions/{rev1}")
    assert {o["kind"] for o in body["objects"]} == {"Backend", "HTTPRoute"}

    code, body = proc.api("POST", "/api/v1/rollback", {"revision": rev1, "message": "bad deploy"})
    assert code == 200, body
    assert body["rollbackOf"] == rev1 and body["revision"] == rev1 + 2
    wait_until(lambda: _pod(port) == (200, "a-0"), 5.0, "the rollback to serve")
    items = proc.api("GET", "/api/v1/revisions")[1]["items"]
    assert items[0]["rollbackOf"] == rev1 and items[0]["message"] == "bad deploy"


def test_status_conditions_name_missing_backends_and_programmed_workers(
    gw: tuple[TurnoutProcess, int],
) -> None:
    proc, _ = gw
    code, body = proc.api(
        "POST", "/api/v1/namespaces/default/httproutes", route("r", [to("ghost")])
    )
    assert code == 201, body

    def conditions() -> dict[str, dict[str, Any]]:
        obj = proc.api("GET", "/api/v1/namespaces/default/httproutes/r")[1]
        return {c["type"]: c for c in obj["status"]["conditions"]}

    wait_until(lambda: conditions()["Programmed"]["status"] == "True", 5.0, "Programmed")
    conds = conditions()
    assert conds["Accepted"]["status"] == "True"
    assert conds["ResolvedRefs"]["status"] == "False"
    assert "ghost" in conds["ResolvedRefs"]["message"]
    assert "2/2 workers" in conds["Programmed"]["message"]


def test_list_selectors_and_pagination(gw: tuple[TurnoutProcess, int]) -> None:
    proc, _ = gw
    objs = []
    for i in range(7):
        b = backend(f"b{i}", 1000 + i)
        b["metadata"]["labels"] = {"tier": "web" if i % 2 else "db", "n": str(i)}
        objs.append(b)
    other = backend("elsewhere", 1, namespace="team-a")
    assert proc.api("POST", "/api/v1/apply", {"manifests": [*objs, other]})[0] == 200
    names = [o["metadata"]["name"] for o in proc.api("GET", "/api/v1/backends")[1]["items"]]
    assert names == [f"b{i}" for i in range(7)] + ["elsewhere"]
    body = proc.api("GET", "/api/v1/namespaces/default/backends?labelSelector=tier%3Dweb")[1]
    assert [o["metadata"]["name"] for o in body["items"]] == ["b1", "b3", "b5"]
    body = proc.api("GET", "/api/v1/backends?labelSelector=tier+in+(db),n!%3D0")[1]
    assert [o["metadata"]["name"] for o in body["items"]] == ["b2", "b4", "b6"]
    seen: list[str] = []
    url = "/api/v1/backends?limit=3"
    while True:
        page = proc.api("GET", url)[1]
        seen += [o["metadata"]["name"] for o in page["items"]]
        if not page["metadata"]["continue"]:
            break
        url = f"/api/v1/backends?limit=3&continue={page['metadata']['continue']}"
    assert seen == names
    code, body = proc.api("GET", "/api/v1/backends?labelSelector=%3D%3D")
    assert code == 400, body


def test_watch_streams_changes(gw: tuple[TurnoutProcess, int]) -> None:
    proc, _ = gw
    proc.api("POST", "/api/v1/namespaces/default/backends", backend("before", 1))
    lines: list[dict[str, Any]] = []
    conn = http.client.HTTPConnection("127.0.0.1", proc.admin_port, timeout=10)
    conn.request(
        "GET", "/api/v1/watch?kind=Backend", headers={"Authorization": f"Bearer {proc.token}"}
    )
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-type") == "application/x-ndjson"

    def read() -> None:
        while len(lines) < 4:
            raw = resp.readline()
            if not raw:
                return
            lines.append(json.loads(raw))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(lambda: len(lines) >= 2, 5.0, "the initial listing")
    proc.api("POST", "/api/v1/namespaces/default/backends", backend("after", 2))
    proc.api("DELETE", "/api/v1/namespaces/default/backends/before")
    proc.api("POST", "/api/v1/namespaces/default/httproutes", route("r", [to("after")]))
    reader.join(10)
    conn.close()
    kinds = [(e["type"], e.get("object", {}).get("metadata", {}).get("name")) for e in lines]
    assert kinds[:2] == [("ADDED", "before"), ("BOOKMARK", None)]
    assert ("ADDED", "after") in kinds and ("DELETED", "before") in kinds
    assert all(e.get("object", {}).get("kind", "Backend") == "Backend" for e in lines)
