"""The harness itself: a real gateway process in front of a real echo upstream."""

from __future__ import annotations

import json
import urllib.request

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to


def test_request_reaches_upstream_through_real_processes(
    echo: EchoFactory, serve: ServeFactory, port: int
) -> None:
    up = echo(pod="orders-local-0")
    gw = serve(dump(gateway("gw", port), backend("orders", up.port), route("r", [to("orders")])))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/orders/1?x=1", timeout=5) as resp:
        body = json.loads(resp.read())
    assert resp.status == 200
    assert body["path"] == "/orders/1?x=1"
    assert body["pod"] == "orders-local-0"
    assert gw.status()["ready"]
