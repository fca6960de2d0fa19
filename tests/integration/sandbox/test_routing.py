"""Sandbox routing over real sockets: keyed requests reach the override of every
overridden backend and the baseline of every other; unknown keys reach the baseline."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess
from turnout.testing.requests import get


def _get(
    port: int, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    reply = get(port, path, headers)
    return reply.status, reply.json() if reply.is_json else {}, reply.response


def sandbox(name: str, overrides: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": name, "labels": spec.pop("labels", {})},
        "spec": {"overrides": overrides, **spec},
    }


def override(name: str, *ports: int) -> dict[str, Any]:
    return {"backend": name, "endpoints": [{"address": f"127.0.0.1:{p}"} for p in ports]}


@pytest.fixture
def shop(serve: ServeFactory, port: int, echo: EchoFactory) -> tuple[TurnoutProcess, int]:
    orders, payments = echo("orders-base"), echo("payments-base")
    orders_dev = echo("orders-dev")
    proc = serve(
        dump(
            gateway(port=port),
            backend("orders", orders.port),
            backend("payments", payments.port),
            route("r", [to("orders", "/orders"), to("payments", "/payments")]),
            sandbox("feature-x", [override("orders", orders_dev.port)], routingKey="fx"),
        )
    )
    return proc, port


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({"x-turnout-routing-key": "fx"}, "/orders"),
        ({"baggage": "userId=1,turnout-routing-key=fx;prop=1"}, "/orders"),
        ({"baggage": "sd-routing-key=fx"}, "/orders"),
        ({"tracestate": "congo=t61rcWkgMzE,turnout-routing-key=fx"}, "/orders"),
        ({"ot-baggage-turnout-routing-key": "fx"}, "/orders"),
        ({"uberctx-sd-routing-key": "fx"}, "/orders"),
        ({"cookie": "a=b; turnout-routing-key=fx"}, "/orders"),
        ({}, "/orders?x=1&turnout-routing-key=fx"),
    ],
)
def test_every_carrier_routes_to_the_override(
    shop: tuple[TurnoutProcess, int], headers: dict[str, str], path: str
) -> None:
    _, port = shop
    status, body, _ = _get(port, path, headers)
    assert status == 200
    assert body["pod"] == "orders-dev"


def test_baseline_for_unknown_keys_and_other_backends(shop: tuple[TurnoutProcess, int]) -> None:
    _, port = shop
    assert _get(port, "/orders")[1]["pod"] == "orders-base"
    assert _get(port, "/orders", {"x-turnout-routing-key": "nope"})[1]["pod"] == "orders-base"
    # malformed keys are ignored, never an error
    assert _get(port, "/orders", {"x-turnout-routing-key": "fx fx"})[1]["pod"] == "orders-base"
    assert _get(port, "/orders", {"baggage": "turnout-routing-key=" + "a" * 64})[0] == 200
    # the key selects overrides only: payments has none, so it stays on its baseline
    keyed = {"x-turnout-routing-key": "fx"}
    assert _get(port, "/payments", keyed)[1]["pod"] == "payments-base"


def test_keys_travel_upstream(shop: tuple[TurnoutProcess, int]) -> None:
    _, port = shop
    # carried in a header: passed on as received
    _, body, _ = _get(port, "/payments", {"baggage": "turnout-routing-key=fx,k=v"})
    assert body["headers"]["Baggage"] == ["turnout-routing-key=fx,k=v"]
    # a preview link: the key goes upstream where services look for it, and the
    # browser gets a cookie so its next requests carry it without the parameter
    _, body, resp = _get(port, "/orders?turnout-routing-key=fx")
    assert body["pod"] == "orders-dev"
    assert body["headers"]["Baggage"] == ["turnout-routing-key=fx"]
    assert body["headers"]["X-Turnout-Routing-Key"] == ["fx"]
    cookie = resp.getheader("set-cookie") or ""
    assert cookie.startswith("turnout-routing-key=fx;") and "HttpOnly" in cookie


def test_keyed_and_unkeyed_requests_never_share_upstream_connections(
    shop: tuple[TurnoutProcess, int],
) -> None:
    """One client connection alternating keyed and plain requests: each lands on its
    own destination every time (pools are per destination, never per client)."""
    _, port = shop
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for i in range(20):
            headers = {"x-turnout-routing-key": "fx"} if i % 2 else {}
            conn.request("GET", "/orders", headers=headers)
            resp = conn.getresponse()
            pod = json.loads(resp.read())["pod"]
            assert pod == ("orders-dev" if i % 2 else "orders-base"), i
    finally:
        conn.close()
