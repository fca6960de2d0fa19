"""Metrics aggregated across workers, health endpoints, and the JSON access log."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing import free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import eventually
from turnout.testing.requests import get


def _get(port: int, path: str, **headers: str) -> int:
    return get(port, path, headers).status


def test_counters_are_exact_across_two_workers(echo: EchoFactory, serve: ServeFactory) -> None:
    port, up = free_port(), echo()
    refused = free_port()
    gw = serve(
        dump(
            gateway("gw", port),
            backend("echo", up.port),
            backend("dead", refused),
            route("r", [to("echo", "/ok"), to("dead", "/dead")]),
        ),
        workers=2,
    )
    for _ in range(40):  # a new connection each: the kernel spreads them over both workers
        assert _get(port, "/ok") == 200
    for _ in range(3):
        assert _get(port, "/nope") == 404
    for _ in range(2):
        assert _get(port, "/dead") == 502
    labels = {"route": "default/r", "backend": "default/echo"}
    assert eventually(lambda: gw.metric("turnout_requests_total", code="2xx", **labels) == 40, 10.0)
    assert eventually(lambda: gw.metric("turnout_requests_total", route="", code="4xx") == 3, 10.0)
    assert eventually(
        lambda: gw.metric("turnout_upstream_connect_errors_total", backend="default/dead") == 2,
        10.0,
    )
    assert gw.metric("turnout_requests_total", backend="default/dead", code="5xx") == 2
    assert gw.metric("turnout_request_duration_seconds_count", **labels) == 40
    assert gw.metric("turnout_request_duration_seconds_bucket", le="+Inf", **labels) == 40
    assert gw.metric("turnout_workers") == 2
    assert gw.metric("turnout_downstream_connections_total") >= 45


def test_counters_survive_a_worker_restart(echo: EchoFactory, serve: ServeFactory) -> None:
    import os
    import signal

    port, up = free_port(), echo()
    gw = serve(dump(gateway("gw", port), backend("echo", up.port), route("r", [to("echo")])))
    for _ in range(10):
        _get(port, "/")
    labels = {"route": "default/r", "backend": "default/echo", "code": "2xx"}
    assert eventually(lambda: gw.metric("turnout_requests_total", **labels) == 10, 10.0)
    (pid,) = gw.worker_pids()
    os.kill(pid, signal.SIGKILL)
    assert eventually(lambda: gw.status()["ready"] and pid not in gw.worker_pids(), 20)
    for _ in range(5):
        _get(port, "/")
    assert eventually(lambda: gw.metric("turnout_requests_total", **labels) == 15, 10.0)


def test_health_and_readiness(echo: EchoFactory, serve: ServeFactory) -> None:
    port, up = free_port(), echo()
    gw = serve(dump(gateway("gw", port), backend("echo", up.port), route("r", [to("echo")])))
    with urllib.request.urlopen(f"{gw.admin}/healthz", timeout=5) as resp:
        assert resp.status == 200
    status = gw.status()
    assert status["ready"] and status["revision"] == 1
    assert status["listeners"] == [f"127.0.0.1:{port}"]
    with urllib.request.urlopen(f"{gw.admin}/metrics", timeout=5) as resp:
        assert resp.headers["content-type"].startswith("text/plain")


def test_access_log_lines_are_json_with_the_configured_fields(
    echo: EchoFactory, serve: ServeFactory, tmp_path: Path
) -> None:
    port, up = free_port(), echo()
    log_file = tmp_path / "access.log"
    serve(
        dump(gateway("gw", port), backend("echo", up.port), route("r", [to("echo")])),
        access_log=str(log_file),
        args=["--access-log-fields", "method,path,status,route,backend,request_id,user_agent"],
    )
    for i in range(5):
        _get(port, f"/a?i={i}", **{"User-Agent": 'test "quoted" agent', "X-Request-Id": f"req-{i}"})
    _get(port, "/b\\x")  # refused (400) before routing: logged too, without a route

    def lines() -> list[dict[str, object]]:
        if not log_file.exists():
            return []
        return [json.loads(line) for line in log_file.read_text().splitlines()]

    assert eventually(lambda: len(lines()) == 6, 10.0)
    first = lines()[0]
    assert list(first) == [
        "method",
        "path",
        "status",
        "route",
        "backend",
        "request_id",
        "user_agent",
    ]
    assert first == {
        "method": "GET",
        "path": "/a?i=0",
        "status": 200,
        "route": "default/r",
        "backend": "default/echo",
        "request_id": "req-0",
        "user_agent": 'test "quoted" agent',
    }
    assert lines()[5]["status"] == 400 and lines()[5]["route"] is None


def test_unknown_access_log_field_is_a_startup_error(tmp_path: Path) -> None:
    from turnout.testing import TurnoutProcess

    conf = tmp_path / "c"
    conf.mkdir()
    (conf / "gw.yaml").write_text(dump(gateway("gw", free_port())))
    proc = TurnoutProcess(conf, extra_args=["--access-log-fields", "status,bogus"])
    proc.start(expect_ready=False)
    assert proc.proc is not None and proc.proc.wait(20) == 2
    proc.stop()
    assert "unknown access log field(s) bogus" in proc.stderr()
