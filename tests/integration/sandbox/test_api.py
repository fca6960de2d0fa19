"""Sandboxes and RouteGroups through the admin API: generated keys, conflicts refused
at creation, routability per worker in status, TTL expiry, and per-key history."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.sandbox.test_routing import _get, override, sandbox
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.process import TurnoutProcess

SANDBOXES = "/api/v1/namespaces/default/sandboxes"
GROUPS = "/api/v1/namespaces/default/routegroups"


@pytest.fixture
def env(serve: ServeFactory, port: int, echo: EchoFactory) -> dict[str, Any]:
    ports = {name: echo(name).port for name in ("orders", "payments", "orders-dev", "pay-dev")}
    proc = serve(
        dump(
            gateway(port=port),
            backend("orders", ports["orders"]),
            backend("payments", ports["payments"]),
            route("r", [to("orders", "/orders"), to("payments", "/payments")]),
        ),
        workers=2,
    )
    return {"proc": proc, "port": port, "ports": ports}


def _pod(port: int, path: str, key: str | None) -> str:
    headers = {"baggage": f"turnout-routing-key={key}"} if key else {}
    pod: str = _get(port, path, headers)[1]["pod"]
    return pod


def test_create_route_status_trace_delete(env: dict[str, Any]) -> None:
    proc: TurnoutProcess = env["proc"]
    port, ports = env["port"], env["ports"]
    code, created = proc.api(
        "POST", SANDBOXES, sandbox("fx", [override("orders", ports["orders-dev"])])
    )
    assert code == 201, created
    key = created["spec"]["routingKey"]
    assert len(key) == 8
    wait_until(lambda: _pod(port, "/orders", key) == "orders-dev", 5.0)
    # every request with the key (whichever worker takes it) reaches the override
    assert {_pod(port, "/orders", key) for _ in range(20)} == {"orders-dev"}
    assert _pod(port, "/payments", key) == "payments"
    assert _pod(port, "/orders", None) == "orders"

    def routable() -> dict[str, Any] | None:
        status = proc.api("GET", f"{SANDBOXES}/fx")[1]["status"]
        return status if status["routable"]["allWorkersSince"] else None

    status = wait_until(routable, 5.0)
    assert status["routingKey"] == key
    assert len(status["routable"]["workers"]) == 2

    # re-applying the same manifest without a key keeps the key
    code, again = proc.api(
        "PUT", f"{SANDBOXES}/fx", sandbox("fx", [override("orders", ports["orders-dev"])])
    )
    assert code == 200 and again["spec"]["routingKey"] == key

    # the history of the key, across workers (shipped once a second)
    def traced() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = proc.api("GET", f"/api/v1/trace?key={key}")[1]["items"]
        return items if len(items) >= 22 else []

    items = wait_until(traced, 5.0)
    first = items[0]
    assert first["method"] == "GET" and first["target"] == "/orders"
    assert first["backend"] == f"default/orders@{key}" and first["status"] == 200
    assert first["endpoint"] == f"127.0.0.1:{ports['orders-dev']}"
    assert {i["route"] for i in items} == {"default/r"}
    assert proc.api("GET", "/api/v1/trace?key=bad%20key")[0] == 400

    assert proc.api("DELETE", f"{SANDBOXES}/fx")[0] == 200
    wait_until(lambda: _pod(port, "/orders", key) == "orders", 5.0)


def test_conflicts_are_refused_at_creation(env: dict[str, Any]) -> None:
    proc: TurnoutProcess = env["proc"]
    ports = env["ports"]
    twice = sandbox(
        "twice",
        [override("orders", ports["orders-dev"]), override("orders", ports["pay-dev"])],
    )
    code, body = proc.api("POST", SANDBOXES, twice)
    assert code == 422, body
    assert "overridden twice" in str(body)
    code, _ = proc.api(
        "POST", SANDBOXES, sandbox("a", [override("orders", ports["orders-dev"])], routingKey="k1")
    )
    assert code == 201
    code, body = proc.api(
        "POST", SANDBOXES, sandbox("b", [override("payments", ports["pay-dev"])], routingKey="k1")
    )
    assert code == 422 and "already used by Sandbox default/a" in str(body)
    neither = sandbox("c", [{"backend": "orders"}])
    code, body = proc.api("POST", SANDBOXES, neither)
    assert code == 422 and "exactly one of 'endpoints' and 'local'" in str(body)


def test_route_group_joins_sandboxes(env: dict[str, Any]) -> None:
    proc: TurnoutProcess = env["proc"]
    port, ports = env["port"], env["ports"]
    labels = {"feature": "checkout-v2"}
    for name, ov in (
        ("o", override("orders", ports["orders-dev"])),
        ("p", override("payments", ports["pay-dev"])),
    ):
        assert proc.api("POST", SANDBOXES, sandbox(name, [ov], labels=labels))[0] == 201
    group = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "RouteGroup",
        "metadata": {"name": "cv2"},
        "spec": {"routingKey": "cv2", "match": {"labels": labels}},
    }
    assert proc.api("POST", GROUPS, group)[0] == 201
    wait_until(lambda: _pod(port, "/orders", "cv2") == "orders-dev", 5.0)
    assert _pod(port, "/payments", "cv2") == "pay-dev"
    # a third matching sandbox overriding orders again would make the group ambiguous
    clash = sandbox("o2", [override("orders", ports["pay-dev"])], labels=labels)
    code, body = proc.api("POST", SANDBOXES, clash)
    assert code == 422 and "both override Backend default/orders" in str(body)


def test_ttl_deletes_the_sandbox(env: dict[str, Any]) -> None:
    proc: TurnoutProcess = env["proc"]
    port, ports = env["port"], env["ports"]
    short = sandbox("short", [override("orders", ports["orders-dev"])], routingKey="tmp", ttl="2s")
    code, _ = proc.api("POST", SANDBOXES, short)
    assert code == 201
    wait_until(lambda: _pod(port, "/orders", "tmp") == "orders-dev", 5.0)
    assert "expiresAt" in proc.api("GET", f"{SANDBOXES}/short")[1]["status"]
    wait_until(lambda: proc.api("GET", f"{SANDBOXES}/short")[0] == 404, 6.0)
    assert _pod(port, "/orders", "tmp") == "orders"
    audit = proc.api("GET", "/api/v1/audit?limit=20")[1]
    assert any(a.get("actor") == "system:sandbox-ttl" for a in audit["items"]), audit
