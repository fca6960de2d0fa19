"""Retries over real sockets: triggers, replayed bodies, per-try timeouts, the budget,
and the requests that must never be retried."""

from __future__ import annotations

import http.client
import time
from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from turnout.samples.echo import EchoState
from turnout.testing import TurnoutProcess
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import request


def _call(
    port: int, method: str = "GET", path: str = "/", body: bytes | None = None
) -> tuple[int, dict[str, Any] | None]:
    reply = request(port, path, method=method, body=body)
    return reply.status, reply.json() if reply.is_json else None


def _serve(serve: ServeFactory, port: int, *states: EchoState, **spec: Any) -> TurnoutProcess:
    b = backend("shop", *(s.port for s in states), **spec)
    return serve(dump(gateway(port=port), b, route("r", [to("shop")])))


RETRY_5XX = {"numRetries": 2, "retryOn": {"triggers": ["5xx", "connect-failure", "reset"]}}


def test_a_failing_endpoint_is_retried_on_the_other(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    good, bad = echo("good-0"), echo("bad-0")
    bad.force_status = 500
    proc = _serve(serve, port, good, bad, retry=RETRY_5XX)
    results = [_call(port) for _ in range(20)]
    assert all(status == 200 for status, _ in results), [s for s, _ in results]
    assert bad.requests >= 8  # round robin kept trying it; every failure was retried
    wait_until(
        lambda: (
            proc.metric("turnout_upstream_retries_total", backend="default/shop") == bad.requests
        ),
        5.0,
        "the retries to show in the metrics",
    )


def test_request_bodies_are_replayed_and_large_ones_are_not_retried(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    good, bad = echo("good-0"), echo("bad-0")
    bad.force_status = 503
    _serve(serve, port, bad, good, retry=RETRY_5XX)
    small = b"x" * 10_000
    for _ in range(4):
        status, doc = _call(port, "POST", "/", small)
        assert status == 200 and doc is not None
        assert doc["body_bytes"] == len(small)  # the replayed body arrived whole
    # Over the replay limit (64 KiB) the body is not kept: a failure reaches the client.
    big = b"y" * 200_000
    statuses = {_call(port, "POST", "/", big)[0] for _ in range(4)}
    assert statuses == {200, 503}


def test_connect_failures_are_retried_and_exhaustion_is_503(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    from turnout.testing import free_port

    good = echo("good-0")
    dead = free_port()
    other = free_port()
    config = dump(
        gateway(port=port),
        gateway("gw2", port=other),
        backend("shop", good.port, dead, retry=RETRY_5XX),
        backend("gone", dead, retry=RETRY_5XX),
        route("r", [to("shop")]),
        route("r2", [to("gone")], gateway_name="gw2"),
    )
    serve(config)
    assert {_call(port)[0] for _ in range(10)} == {200}
    # Only a dead endpoint: every attempt fails, and the answer says so.
    status, doc = _call(other)
    assert status == 503
    assert doc is not None and doc["error"] == "upstream_unavailable"
    assert "all 3 attempts failed" in doc["message"]


def test_per_try_timeout_moves_on_to_a_faster_endpoint(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    slow, fast = echo("slow-0"), echo("fast-0")
    slow.force_delay = 2.0
    retry = {
        "numRetries": 1,
        "retryOn": {"triggers": ["gateway-error"]},
        "perRetry": {"timeout": "200ms"},
    }
    _serve(serve, port, slow, fast, retry=retry)
    started = time.monotonic()
    pods = [_call(port)[1] for _ in range(4)]
    elapsed = time.monotonic() - started
    assert [p["pod"] if p else None for p in pods] == ["fast-0"] * 4
    assert elapsed < 4 * 2.0  # the slow endpoint was never waited out


def test_the_retry_budget_caps_retries(serve: ServeFactory, port: int, echo: EchoFactory) -> None:
    good, bad = echo("good-0"), echo("bad-0")
    bad.force_status = 500
    retry = {**RETRY_5XX, "budget": {"percent": 0, "minRetryConcurrency": 0}}
    proc = _serve(serve, port, good, bad, retry=retry)
    statuses = [_call(port)[0] for _ in range(10)]
    assert statuses.count(500) == 5  # round robin: every other request fails, none retried
    wait_until(
        lambda: (
            proc.metric(
                "turnout_upstream_overflow_total", backend="default/shop", reason="retry-budget"
            )
            == 5
        ),
        5.0,
        "the refused retries to show in the metrics",
    )


def test_a_response_already_started_is_never_retried(
    serve: ServeFactory, port: int, bg: Any
) -> None:
    from turnout.testing.faults import start_faults

    server, state = bg.run(start_faults())
    try:
        fault_port = server.sockets[0].getsockname()[1]
        spec = backend("shop", fault_port, retry=RETRY_5XX)
        serve(dump(gateway(port=port), spec, route("r", [to("shop")])))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/truncated")
        resp = conn.getresponse()
        assert resp.status == 200
        try:
            resp.read()
        except http.client.IncompleteRead:
            pass
        else:
            raise AssertionError("a truncated response must not look complete")
        conn.close()
        assert [e for e in state.log if "/truncated" in e] == ["GET /truncated"]
    finally:
        bg.call(server.close)
