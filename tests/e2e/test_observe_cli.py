"""``turnout explain`` and ``turnout top`` against a real server (and ``explain -f`` on files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EchoFactory, ServeFactory
from tests.e2e.conftest import Cli
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get

CANARY = {
    "matches": [
        {
            "path": {"type": "PathPrefix", "value": "/api"},
            "headers": [{"name": "x-canary", "value": "1"}],
        }
    ],
    "backendRefs": [{"name": "items-v2"}],
}


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def manifests(echo_module: EchoFactory, port: int) -> str:
    return dump(
        gateway("gw", port),
        backend("items", echo_module("items").port),
        backend("items-v2", echo_module("items-v2").port),
        route("api", [CANARY, to("items", "/api")], hostnames=["shop.example.com"]),
    )


@pytest.fixture(scope="module")
def server(serve_module: ServeFactory, manifests: str) -> TurnoutProcess:
    return serve_module(manifests)


def test_explain_live_answers_from_the_served_revision(cli: Cli, port: int) -> None:
    url = f"http://shop.example.com:{port}/api/items"
    out = json.loads(cli.ok("explain", "GET", url, "-H", "x-canary: 1", "-o", "json"))
    assert out["route"] == {"name": "default/api", "rule": 0, "match": 0}
    assert [b["backend"] for b in out["backends"]] == ["default/items-v2"]
    assert out["revision"] == 1
    text = cli.ok("explain", "GET", url)
    assert "header x-canary is absent" in text
    assert text.rstrip().endswith("route default/api → default/items 100%")


def test_explain_without_a_route_exits_1(cli: Cli, port: int) -> None:
    run = cli("explain", "GET", f"http://other.example.com:{port}/api")
    assert run.code == 1
    assert "no route matches this request: 404" in run.out


def test_explain_bad_url_is_refused_naming_the_field(cli: Cli) -> None:
    run = cli("explain", "GET", "shop.example.com/api")
    assert run.code == 1
    assert run.err.startswith("error: url: 'shop.example.com/api' is not an absolute")


def test_explain_files_offline(cli: Cli, manifests: str, port: int, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(manifests)
    url = f"http://shop.example.com:{port}/api/items"
    out = json.loads(
        cli.ok("explain", "GET", url, "-f", str(path), "-o", "json", env={"TURNOUT_SERVER": None})
    )
    assert out["route"]["rule"] == 1
    assert out["revision"] == 0


def test_top_once_shows_the_routes_traffic(cli: Cli, port: int) -> None:
    for _ in range(5):
        headers = {"x-canary": "1", "host": "shop.example.com"}
        assert get(port, "/api/items", headers).status == 200
    server = cli.proc
    labels = {"route": "default/api", "code": "2xx"}
    wait_until(lambda: server.metric("turnout_requests_total", **labels) >= 5, 10, "counted")
    out = cli.ok("top", "--once", "--interval", "0.2", "--by", "backend", "--sort", "name")
    lines = out.splitlines()
    assert lines[0].startswith("revision 1   workers 1   open connections")
    assert lines[1].split() == ["NAME", "RPS", "ERR%", "P50", "P99", "REQUESTS"]
    row = next(line.split() for line in lines if line.startswith("default/items-v2"))
    assert row[-1] == "5"  # cumulative requests


def test_top_refuses_an_unknown_sort(cli: Cli) -> None:
    run = cli("top", "--once", "--sort", "latency")
    assert run.code == 1 and "--sort 'latency'" in run.err
