"""Sandbox / RouteGroup columns, flag parsing, the gateway URL and trace rows (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from turnout.cli import columns
from turnout.cli.errors import CliError
from turnout.cli.sandboxes import (
    listener_url,
    parse_overrides,
    parse_pairs,
    paste_lines,
    route_group_manifest,
    sandbox_manifest,
)
from turnout.cli.trace import HEADERS, clock, fixed, row

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _sandbox(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": "fx", "namespace": "default"},
        "spec": spec,
        **({"status": status} if status is not None else {}),
    }


def test_sandbox_columns() -> None:
    m = _sandbox(
        {
            "routingKey": "fx",
            "expiresAt": "2026-11-22T13:59:00Z",
            "routable": {
                "workers": [{"pid": 1, "since": "2026-11-22T11:00:00.000+00:00"}, {"pid": 2}],
                "allWorkersSince": None,
            },
        },
        overrides=[
            {"backend": "orders", "endpoints": [{"address": "127.0.0.1:9100"}]},
            {"backend": "payments", "local": {}},
        ],
    )
    headers, rows = columns.table("Sandbox", [m], wide=False, namespaced_column=False)
    assert headers == ["NAME", "KEY", "OVERRIDES", "EXPIRES", "ROUTABLE", "AGE"]
    assert rows[0][:5] == ["fx", "fx", "orders→127.0.0.1:9100,payments→local", rows[0][3], "1/2"]
    assert columns.expires(m, NOW) == "in 119m"
    assert columns.expires(m, NOW + timedelta(hours=3)) == "expired"


def test_sandbox_columns_without_status() -> None:
    m = _sandbox(
        routingKey="k",
        overrides=[{"backend": f"b{i}", "endpoints": [{"address": "h:1"}]} for i in range(5)],
    )
    assert columns.routing_key(m) == "k"
    assert columns.expires(m) == "-"
    assert columns.routable(m) == "-"
    _, rows = columns.table("Sandbox", [m], wide=False, namespaced_column=False)
    assert rows[0][2] == "b0→h:1,b1→h:1,b2→h:1,+2 more"
    _, wide = columns.table("Sandbox", [m], wide=True, namespaced_column=False)
    assert wide[0][2].count("→") == 5


def test_override_target_joins_endpoints() -> None:
    two = {"backend": "o", "endpoints": [{"address": "a:1"}, {"address": "b:2"}]}
    assert columns.override_target(two) == "a:1+b:2"
    assert columns.override_target({"backend": "o", "local": {}}) == "local"


def test_route_group_columns() -> None:
    m = {
        "kind": "RouteGroup",
        "metadata": {"name": "cv2"},
        "spec": {"match": {"labels": {"feature": "cv2", "team": "co"}}},
        "status": {"routingKey": "abcdefgh"},
    }
    headers, rows = columns.table("RouteGroup", [m], wide=False, namespaced_column=True)
    assert headers == ["NAMESPACE", "NAME", "KEY", "MATCH", "AGE"]
    assert rows[0][:4] == ["-", "cv2", "abcdefgh", "feature=cv2,team=co"]


def test_parse_overrides_and_pairs() -> None:
    assert parse_overrides(["orders=127.0.0.1:9100, 127.0.0.1:9101"], ["payments"]) == [
        {
            "backend": "orders",
            "endpoints": [{"address": "127.0.0.1:9100"}, {"address": "127.0.0.1:9101"}],
        },
        {"backend": "payments", "local": {}},
    ]
    # the same backend twice is sent as given: the server says where it is wrong
    assert len(parse_overrides(["o=a:1", "o=b:2"], [])) == 2
    for bad in ("orders", "=a:1", "orders="):
        with pytest.raises(CliError) as exc:
            parse_overrides([bad], [])
        assert exc.value.exit_code == 2
    with pytest.raises(CliError):
        parse_overrides([], ["a=b"])
    assert parse_pairs(["team=checkout", "a = b"], "--label") == {"team": "checkout", "a": "b"}
    with pytest.raises(CliError, match="--match 'nope': expected KEY=VALUE"):
        parse_pairs(["nope"], "--match")


def test_manifests() -> None:
    sb = sandbox_manifest("fx", [], key="k", ttl="1d", labels={"t": "c"}, description="d")
    assert sb["metadata"] == {"name": "fx", "labels": {"t": "c"}}
    assert sb["spec"] == {"routingKey": "k", "ttl": "24h", "description": "d", "overrides": []}
    assert "routingKey" not in sandbox_manifest("fx", [])["spec"]
    rg = route_group_manifest("g", {"feature": "x"})
    assert rg["kind"] == "RouteGroup"
    assert rg["spec"] == {"match": {"labels": {"feature": "x"}}}


def _gw(addresses: list[str], *listeners: tuple[str, int]) -> dict[str, Any]:
    return {
        "kind": "Gateway",
        "spec": {
            "addresses": [{"type": "IPAddress", "value": a} for a in addresses],
            "listeners": [{"name": f"l{p}", "protocol": pr, "port": p} for pr, p in listeners],
        },
    }


@pytest.mark.parametrize(
    ("gateways", "url"),
    [
        ([_gw(["127.0.0.1"], ("HTTP", 8080))], "http://127.0.0.1:8080"),
        ([_gw([], ("HTTP", 8080))], "http://admin.example:8080"),  # bound to 0.0.0.0
        ([_gw(["0.0.0.0"], ("HTTP", 80))], "http://admin.example"),
        ([_gw(["::"], ("HTTP", 8080))], "http://admin.example:8080"),
        ([_gw(["::1"], ("HTTP", 8080))], "http://[::1]:8080"),
        ([_gw(["10.0.0.1"], ("HTTPS", 8443), ("HTTP", 8080))], "http://10.0.0.1:8080"),
        ([_gw(["10.0.0.1"], ("HTTPS", 443)), _gw([], ("TLS", 9000))], "https://10.0.0.1"),
        ([_gw(["10.0.0.1"], ("TCP", 9000))], None),
        ([], None),
    ],
)
def test_listener_url(gateways: list[dict[str, Any]], url: str | None) -> None:
    assert listener_url(gateways, "admin.example") == url


def test_paste_lines() -> None:
    lines = paste_lines("fx", "http://127.0.0.1:8080")
    assert "curl -H 'baggage: turnout-routing-key=fx' http://127.0.0.1:8080/" in lines
    assert "baggage: turnout-routing-key=fx" in lines
    assert "http://127.0.0.1:8080/?turnout-routing-key=fx" in lines
    placeholder = paste_lines("fx", None)
    assert placeholder[0].startswith("# no Gateway listener found")
    assert "curl -H 'baggage: turnout-routing-key=fx' http://GATEWAY/" in placeholder


def test_trace_rows() -> None:
    t = datetime(2026, 11, 22, 9, 30, 5, 123456).timestamp()  # local time
    item = {
        "seq": 1,
        "key": "fx",
        "time": t,
        "durationMs": 1.25,
        "method": "GET",
        "target": "/orders",
        "route": "default/r",
        "backend": "default/orders@fx",
        "endpoint": "127.0.0.1:9100",
        "status": 200,
        "requestId": "r1",
    }
    assert clock(t) == "09:30:05.123"
    assert clock(None) == "-"
    cells = row(item)
    assert cells == [
        "09:30:05.123",
        "GET",
        "/orders",
        "200",
        "1.2ms",
        "default/orders@fx",
        "127.0.0.1:9100",
        "default/r",
    ]
    assert row({})[1:] == ["-"] * 7
    # --follow lines keep their columns under the header
    header, line = fixed(HEADERS), fixed(cells)
    assert header.index("STATUS") == line.index("200")
    assert header.index("ROUTE") == line.index("default/r")
