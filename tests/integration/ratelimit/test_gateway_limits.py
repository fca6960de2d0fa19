"""Rate limits through the gateway: exact across the workers of one host (shared table),
exact across two replicas on one Redis, and bounded latency with documented fail-open
behaviour while Redis is stopped (SIGSTOP) — real processes, real sockets, real Redis."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.ratelimit.conftest import RedisServer
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import eventually, wait_until
from turnout.testing.requests import get


def _get(port: int, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    reply = get(port, "/", headers)
    return reply.status, reply.headers, reply.json() if reply.is_json else reply.body


def _policy(limit: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "limits"},
        "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "r"}], "rateLimit": limit},
    }


def _config(port: int, echo_port: int, limit: dict[str, Any]) -> str:
    return dump(
        gateway(port=port),
        backend("svc", echo_port),
        route("r", [to("svc")]),
        _policy(limit),
    )


def test_local_limit_is_exact_across_workers(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    e = echo("e-0")
    limit = {
        "type": "Local",
        "rules": [{"key": {"type": "ClientIP"}, "limit": {"requests": 25, "unit": "Hour"}}],
    }
    proc = serve(_config(port, e.port, limit), workers=2)
    results: list[tuple[int, dict[str, str], Any]] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(15):
            r = _get(port)  # a new connection each time: both workers take some
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = [s for s, _, _ in results]
    assert statuses.count(200) == 25, statuses
    assert statuses.count(429) == 35
    assert e.requests == 25
    ok = next(h for s, h, _ in results if s == 200)
    assert ok["ratelimit-limit"] == "25"
    refused = next((h, b) for s, h, b in results if s == 429)
    assert int(refused[0]["retry-after"]) >= 1
    assert refused[0]["ratelimit-remaining"] == "0"
    assert refused[1]["error"] == "rate_limited"
    assert len(proc.worker_pids()) == 2


def _replica(
    tmp: Path, name: str, echo_port: int, limit: dict[str, Any], redis: str
) -> tuple[TurnoutProcess, int]:
    conf = tmp / name
    conf.mkdir()
    port = free_port()
    (conf / "gateway.yaml").write_text(_config(port, echo_port, limit))
    proc = TurnoutProcess(conf, workers=1, extra_args=["--redis", redis]).start()
    return proc, port


GLOBAL = {
    "type": "Global",
    "rules": [
        {
            "key": {"type": "Header", "name": "x-api-key"},
            "algorithm": "SlidingWindow",
            "limit": {"requests": 20, "unit": "Hour"},
        }
    ],
}


def test_global_limit_is_exact_across_replicas(
    tmp_path: Path, echo: EchoFactory, redis_server: RedisServer
) -> None:
    e = echo("e-0")
    a, port_a = _replica(tmp_path, "a", e.port, GLOBAL, redis_server.url)
    b, port_b = _replica(tmp_path, "b", e.port, GLOBAL, redis_server.url)
    try:
        statuses: list[int] = []
        for i in range(30):
            port = port_a if i % 2 else port_b
            statuses.append(_get(port, {"x-api-key": "team-1"})[0])
        assert statuses.count(200) == 20, statuses
        assert statuses.count(429) == 10
        # Another key has its own budget; a request without the header is not limited.
        assert _get(port_a, {"x-api-key": "team-2"})[0] == 200
        assert _get(port_b)[0] == 200
    finally:
        a.stop()
        b.stop()


def test_redis_stopped_and_resumed_under_load(
    tmp_path: Path, echo: EchoFactory, redis_server: RedisServer
) -> None:
    e = echo("e-0")
    limit = {**GLOBAL, "timeout": "50ms"}
    limit["rules"] = [{**GLOBAL["rules"][0], "limit": {"requests": 100_000, "unit": "Hour"}}]
    proc, port = _replica(tmp_path, "a", e.port, limit, redis_server.url)
    try:
        assert _get(port, {"x-api-key": "k"})[0] == 200
        redis_server.stop()
        try:
            latencies = []
            for _ in range(40):
                started = time.monotonic()
                status, headers, _ = _get(port, {"x-api-key": "k"})
                latencies.append(time.monotonic() - started)
                assert status == 200  # fail-open: allowed …
                assert "ratelimit-remaining" not in headers  # … without a count
            assert max(latencies) < 0.5, max(latencies)
            # The breaker opens after a few timeouts: most answers do not wait at all.
            assert sorted(latencies)[len(latencies) // 2] < 0.04, sorted(latencies)
        finally:
            redis_server.resume()
        wait_until(
            lambda: "ratelimit-remaining" in _get(port, {"x-api-key": "k"})[1],
            5,
            "counting to resume after Redis came back",
        )
    finally:
        proc.stop()


def test_fail_closed_refuses_with_503(
    tmp_path: Path, echo: EchoFactory, redis_server: RedisServer
) -> None:
    e = echo("e-0")
    limit = {**GLOBAL, "failureMode": "Closed"}
    proc, port = _replica(tmp_path, "a", e.port, limit, redis_server.url)
    try:
        assert _get(port, {"x-api-key": "k"})[0] == 200
        redis_server.stop()
        try:
            status, headers, body = _get(port, {"x-api-key": "k"})
            assert status == 503
            assert body["error"] == "rate_limit_unavailable"
            assert int(headers["retry-after"]) >= 1
        finally:
            redis_server.resume()
    finally:
        proc.stop()


def test_global_limits_without_redis_are_refused_at_reload(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    e = echo("e-0")
    proc = serve(dump(gateway(port=port), backend("svc", e.port), route("r", [to("svc")])))
    (proc.config / "policy.yaml").write_text(dump(_policy(GLOBAL)))
    proc.reload()
    eventually(lambda: "without Redis" in proc.stderr(), 10)
    assert "start it with --redis" in proc.stderr()
    assert _get(port)[0] == 200  # the previous revision keeps serving
