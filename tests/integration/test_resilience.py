"""Backend resilience over real sockets: load-balancing algorithms, sticky sessions,
active health checks, outlier ejection and recovery, circuit-breaker limits and the
error-rate breaker — each seen from the client, the metrics and the object status."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from turnout.samples.echo import EchoState
from turnout.testing import TurnoutProcess
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get


def _get(
    port: int, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    reply = get(port, path, headers)
    pod = reply.json()["pod"] if reply.status == 200 and reply.is_json else ""
    return reply.status, reply.headers, pod


def _serve(serve: ServeFactory, port: int, *states: EchoState, **spec: Any) -> TurnoutProcess:
    b = backend("shop", *(s.port for s in states), **spec)
    return serve(dump(gateway(port=port), b, route("r", [to("shop")])))


def test_least_request_prefers_the_idle_endpoint(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    slow, fast = echo("slow-0"), echo("fast-0")
    slow.force_delay = 0.2
    _serve(serve, port, slow, fast, loadBalancer={"type": "LeastRequest"})
    # Four clients in a loop: requests pile up on the slow endpoint, so least-request
    # sends most new ones to the fast one (round robin would split them evenly).
    seen: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            seen[_get(port)[2]] += 1

    clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in clients:
        t.start()
    time.sleep(2.0)
    stop.set()
    for t in clients:
        t.join(5)
    assert seen["fast-0"] > seen["slow-0"] * 3, seen


def test_consistent_hash_on_a_header_is_stable(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    states = [echo(f"e{i}-0") for i in range(4)]
    lb = {
        "type": "ConsistentHash",
        "consistentHash": {"type": "Header", "header": {"name": "x-user"}},
    }
    _serve(serve, port, *states, loadBalancer=lb)
    owners = {}
    for user in range(40):
        pods = {_get(port, headers={"x-user": f"user-{user}"})[2] for _ in range(3)}
        assert len(pods) == 1, (user, pods)
        owners[user] = pods.pop()
    # The keys spread over the endpoints.
    assert len(set(owners.values())) >= 3, Counter(owners.values())


def test_sticky_sessions_set_and_follow_a_cookie(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    a, b = echo("a-0"), echo("b-0")
    _serve(serve, port, a, b, sessionPersistence={"sessionName": "sid"})
    status, headers, first = _get(port)
    assert status == 200
    cookie = headers["set-cookie"]
    assert cookie.startswith("sid=") and "HttpOnly" in cookie and "Max-Age" not in cookie
    token = cookie.split(";")[0]
    # The token names the endpoint without revealing its address.
    assert str(a.port) not in token and str(b.port) not in token
    for _ in range(10):
        status, headers, pod = _get(port, headers={"cookie": f"other=1; {token}"})
        assert (status, pod) == (200, first)
        assert "set-cookie" not in headers
    # A cookie naming nothing known is replaced.
    status, headers, _ = _get(port, headers={"cookie": "sid=0000000000000000"})
    assert status == 200 and headers["set-cookie"].startswith("sid=")


def test_outlier_detection_ejects_and_readmits(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    good, bad = echo("good-0"), echo("bad-0")
    bad.force_status = 500
    passive = {
        "consecutive5XxErrors": 3,
        "baseEjectionTime": "1s",
        "maxEjectionPercent": 50,
    }
    proc = _serve(serve, port, good, bad, healthCheck={"passive": passive})
    statuses = Counter(_get(port)[0] for _ in range(40))
    # Round robin sends every other request to the bad endpoint until 3 in a row failed.
    assert statuses[500] == 3, statuses
    wait_until(
        lambda: proc.metric("turnout_outlier_ejections_total", backend="default/shop") == 1,
        10.0,
        "the ejection to show in the metrics",
    )
    # After the ejection time it gets traffic again; fixed now, it stays in.
    bad.force_status = 0
    time.sleep(1.2)
    pods = Counter(_get(port)[2] for _ in range(20))
    assert pods["bad-0"] >= 5, pods


def test_active_health_checks_take_endpoints_out_and_back(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    good, bad = echo("good-0"), echo("bad-0")
    active = {
        "type": "HTTP",
        "http": {"path": "/health"},
        "interval": "100ms",
        "timeout": "50ms",
        "unhealthyThreshold": 2,
        "healthyThreshold": 2,
    }
    proc = _serve(serve, port, good, bad, healthCheck={"active": active})
    bad.force_status = 503
    bad_key = f"127.0.0.1:{bad.port}"

    def only_good() -> bool:
        return {_get(port)[2] for _ in range(6)} == {"good-0"}

    wait_until(only_good, 10.0, "the unhealthy endpoint to leave the rotation")
    assert proc.metric("turnout_endpoint_healthy", endpoint=bad_key) == 0
    assert proc.metric("turnout_endpoint_healthy", endpoint=f"127.0.0.1:{good.port}") == 1
    assert proc.metric("turnout_health_checks_total", endpoint=bad_key, result="failure") >= 2
    obj = proc.api("GET", "/api/v1/namespaces/default/backends/shop")[1]
    health = {e["address"]: e["health"] for e in obj["status"]["endpoints"]}
    assert health == {f"127.0.0.1:{good.port}": "Healthy", bad_key: "Unhealthy"}
    bad.force_status = 0
    wait_until(lambda: "bad-0" in {_get(port)[2] for _ in range(6)}, 10.0, "recovery")
    assert proc.metric("turnout_endpoint_healthy", endpoint=bad_key) == 1


def test_parallel_request_limit_answers_503_with_the_reason(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    one = echo("one-0")
    proc = _serve(serve, port, one, circuitBreaker={"maxParallelRequests": 1})
    results: list[tuple[int, dict[str, str], str]] = []
    slow = threading.Thread(target=lambda: results.append(_get(port, "/?delay=500ms")))
    slow.start()
    time.sleep(0.2)
    status, headers, _ = _get(port)
    slow.join(5)
    assert status == 503
    assert headers["x-turnout-circuit"] == "max-parallel-requests"
    assert results[0][0] == 200
    wait_until(
        lambda: (
            proc.metric(
                "turnout_upstream_overflow_total",
                backend="default/shop",
                reason="max-parallel-requests",
            )
            == 1
        ),
        10.0,
        "the overflow to show in the metrics",
    )
    assert _get(port)[0] == 200  # the limit frees up with the request


def test_error_rate_breaker_opens_half_opens_and_closes(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    one = echo("one-0")
    one.force_status = 500
    breaker = {
        "errorRate": {
            "threshold": 50,
            "minimumRequests": 4,
            "window": "10s",
            "openDuration": "1s",
            "halfOpenRequests": 1,
        }
    }
    proc = _serve(serve, port, one, circuitBreaker=breaker)
    statuses = [_get(port) for _ in range(8)]
    codes = [s for s, _, _ in statuses]
    assert codes[:4] == [500] * 4
    assert codes[4:] == [503] * 4, codes
    assert statuses[4][1]["x-turnout-circuit"] == "error-rate"
    served = one.requests
    assert served == 4  # an open breaker does not touch the backend
    one.force_status = 0
    time.sleep(1.1)
    assert _get(port)[0] == 200  # the half-open probe succeeds and closes it
    assert [_get(port)[0] for _ in range(3)] == [200, 200, 200]

    def transitions(state: str) -> float:
        return proc.metric(
            "turnout_circuit_breaker_transitions_total", backend="default/shop", state=state
        )

    wait_until(
        lambda: (transitions("open"), transitions("half_open"), transitions("closed")) == (1, 1, 1),
        10.0,
        "the transitions to show in the metrics",
    )


def test_invalid_resilience_settings_are_located(serve: ServeFactory, port: int) -> None:
    from turnout.config.parse import parse_text
    from turnout.config.validate import validate

    lb = {"type": "ConsistentHash", "consistentHash": {"type": "Cookie", "tableSize": 100}}
    text = dump(backend("shop", 1, loadBalancer=lb))
    resources, problems = parse_text(text, "b.yaml")
    _, more = validate(resources)
    messages = {p.path: p.message for p in problems + more}
    assert "needs cookie" in messages["spec.loadBalancer.consistentHash.cookie"]
    assert "prime" in messages["spec.loadBalancer.consistentHash.tableSize"]
