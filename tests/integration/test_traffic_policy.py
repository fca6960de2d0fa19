"""TrafficPolicy attached to Gateways, routes and rules: fault injection and retries,
with the most specific attachment winning — over real sockets."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.requests import get


def _get(port: int, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    reply = get(port, path, headers)
    return reply.status, reply.json() if reply.is_json else reply.body


def policy(name: str, targets: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": name},
        "spec": {"targetRefs": targets, **spec},
    }


def test_fault_injection_aborts_and_delays(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    e = echo("e-0")
    shop = route("shop", [to("svc", "/shop")])
    other = route("other", [to("svc", "/other")])
    faults = {
        "abort": {"httpStatus": 418, "percentage": 100},
        "headers": [{"name": "x-chaos", "value": "on"}],
    }
    slow = {"delay": {"fixedDelay": "300ms", "percentage": 100}}
    serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            shop,
            other,
            policy("chaos", [{"kind": "HTTPRoute", "name": "shop"}], faultInjection=faults),
            policy("slow", [{"kind": "Gateway", "name": "gw"}], faultInjection=slow),
        )
    )
    status, body = _get(port, "/shop", {"x-chaos": "on"})
    assert status == 418 and body["error"] == "fault_abort"
    before = e.requests
    # Without the header the route's policy does not fire, and being more specific it
    # also shadows the Gateway's delay for this route.
    started = time.monotonic()
    assert _get(port, "/shop")[0] == 200
    assert time.monotonic() - started < 0.25
    assert e.requests == before + 1
    # The other route gets the Gateway's delay.
    started = time.monotonic()
    assert _get(port, "/other")[0] == 200
    assert time.monotonic() - started >= 0.3


def test_rule_level_policy_and_retry(serve: ServeFactory, port: int, echo: EchoFactory) -> None:
    good, bad = echo("good-0"), echo("bad-0")
    bad.force_status = 502
    rules = [
        {**to("svc", "/retried"), "name": "retried"},
        {**to("svc", "/plain"), "name": "plain"},
    ]
    retry = {"numRetries": 2, "retryOn": {"triggers": ["gateway-error"]}}
    serve(
        dump(
            gateway(port=port),
            backend("svc", good.port, bad.port),
            route("r", rules),
            policy(
                "retry-one-rule",
                [{"kind": "HTTPRoute", "name": "r", "sectionName": "retried"}],
                retry=retry,
            ),
        )
    )
    assert {_get(port, "/retried")[0] for _ in range(10)} == {200}
    assert {_get(port, "/plain")[0] for _ in range(10)} == {200, 502}


def test_policy_problems_are_reported(serve: ServeFactory, port: int) -> None:
    from turnout.config.parse import parse_text
    from turnout.config.validate import validate

    text = dump(
        gateway(port=port),
        policy(
            "p",
            [{"kind": "HTTPRoute", "name": "missing"}],
            rateLimit={
                "rules": [
                    {
                        "key": {"type": "JWTClaim", "name": "sub"},
                        "limit": {"requests": 1, "unit": "Second"},
                    }
                ]
            },
        ),
    )
    resources, problems = parse_text(text, "p.yaml")
    _, more = validate(resources)
    found = {(p.path, p.severity) for p in problems + more}
    assert ("spec.targetRefs[0].name", "warning") in found
    assert ("spec.rateLimit.rules[0].key.type", "error") in found
