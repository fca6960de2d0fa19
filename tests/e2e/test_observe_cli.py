"""``turnout explain`` and ``turnout top`` against a real server (and ``explain -f`` on files)."""

from __future__ import annotations

import http.client
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
def server(
    serve_module: ServeFactory, manifests: str, tmp_path_factory: pytest.TempPathFactory
) -> TurnoutProcess:
    log = tmp_path_factory.mktemp("log") / "access.log"
    return serve_module(manifests, workers=2, access_log=str(log))


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
    assert lines[0].startswith("revision 1   workers 2   open connections")
    assert lines[1].split() == ["NAME", "RPS", "ERR%", "P50", "P99", "REQUESTS"]
    row = next(line.split() for line in lines if line.startswith("default/items-v2"))
    assert row[-1] == "5"  # cumulative requests


def test_top_refuses_an_unknown_sort(cli: Cli) -> None:
    run = cli("top", "--once", "--sort", "latency")
    assert run.code == 1 and "--sort 'latency'" in run.err


def _shop(port: int, path: str, **headers: str) -> int:
    return get(port, path, {"host": "shop.example.com", **headers}).status


def test_logs_merges_workers_and_filters(cli: Cli, port: int) -> None:
    for i in range(6):  # a connection each: the kernel spreads them over both workers
        assert _shop(port, f"/api/logs-{i}") == 200
    assert _shop(port, "/nowhere") == 404

    def entries(*args: str) -> list[dict[str, object]]:
        out = cli.ok("logs", "-o", "json", "--limit", "1000", *args)
        return [json.loads(line) for line in out.splitlines()]

    wait_until(
        lambda: len([e for e in entries() if str(e.get("path", "")).startswith("/api/logs-")]) == 6,
        15,
        "the six requests reach the ring",
    )
    mine = [e for e in entries("--route", "default/api") if "/logs-" in str(e["path"])]
    assert sorted(str(e["path"]) for e in mine) == [f"/api/logs-{i}" for i in range(6)]
    assert {e["route"] for e in mine} == {"default/api"}
    refused = entries("--status", "4xx")
    assert [e["path"] for e in refused] == ["/nowhere"] and refused[0]["status"] == 404
    events = [e for e in entries() if e["type"] == "event"]
    assert any("serving revision 1" in str(e["message"]) for e in events)
    text = cli.ok("logs", "--status", "404")
    assert "404 GET shop.example.com/nowhere" in text
    run = cli("logs", "--status", "5x")
    assert run.code == 1 and "status: '5x'" in run.err


def test_logs_follow_streams_new_lines(cli: Cli, port: int) -> None:
    server = cli.proc
    query = "/api/v1/logs?follow=true&limit=1&route=default/api"
    conn = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
    try:
        conn.request("GET", query, headers={"Authorization": f"Bearer {server.token}"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert _shop(port, "/api/followed") == 200
        for _ in range(5):
            entry = json.loads(resp.readline())
            if entry.get("path") == "/api/followed":
                break
        else:
            raise AssertionError("the new request never came down the stream")
    finally:
        conn.close()
