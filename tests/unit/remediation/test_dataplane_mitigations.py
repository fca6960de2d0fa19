"""The new Mitigation fields compiled into a snapshot: ejected endpoints, an open circuit,
shifted weights, a tightened rate limit, blocked Consumers, pinned routing keys — and the
same Mitigation past its ``expiresAt`` changes nothing (the lease is also honoured at
compile)."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.proxy.filters.auth.chain import Principal
from turnout.proxy.filters.base import FilterContext
from turnout.proxy.filters.mitigation import ConsumerBlockFilter
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.upstream.breaker import BREAKER_OPEN
from turnout.testing.exchange import ExchangeHarness
from turnout.testing.manifests import backend, dump, gateway, route, to

LIVE = "2999-01-01T00:00:00Z"
PAST = "2001-01-01T00:00:00Z"


def mitigation(name: str, expires: str, target: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": name},
        "spec": {"targetRef": target, "expiresAt": expires, **spec},
    }


ON_APP = {"group": "turnout.dev", "kind": "Backend", "name": "app"}
ON_API = {"kind": "HTTPRoute", "name": "api"}


def two_endpoints() -> dict[str, Any]:
    b = backend("app", 9000)
    b["spec"]["endpoints"] = [{"address": "127.0.0.1:9000"}, {"address": "127.0.0.1:9001"}]
    return b


def harness(*extra: dict[str, Any]) -> ExchangeHarness:
    return ExchangeHarness(dump(gateway(), two_endpoints(), route("api", [to("app")]), *extra))


def endpoints(h: ExchangeHarness) -> list[str]:
    cluster = h.action().choices[0].cluster
    assert cluster is not None
    return sorted(str(e.address) for e in cluster.balancer.endpoints)


def test_an_ejected_endpoint_leaves_the_balancer_until_its_lease_ends() -> None:
    m = mitigation("ej", LIVE, ON_APP, ejectEndpoints=["127.0.0.1:9001"])
    assert endpoints(harness(m)) == ["127.0.0.1:9000"]
    old = mitigation("ej", PAST, ON_APP, ejectEndpoints=["127.0.0.1:9001"])
    assert endpoints(harness(old)) == ["127.0.0.1:9000", "127.0.0.1:9001"]


def test_the_last_endpoint_is_never_ejected_at_compile() -> None:
    both = ["127.0.0.1:9000", "127.0.0.1:9001"]
    m = mitigation("ej", LIVE, ON_APP, ejectEndpoints=both)
    assert endpoints(harness(m)) == both


def test_an_open_circuit_fails_every_request_fast_and_reverts() -> None:
    h = harness(mitigation("oc", LIVE, ON_APP, openCircuit=True))
    cluster = h.action().choices[0].cluster
    assert cluster is not None and cluster.guard.admit(0.0) == BREAKER_OPEN
    call = h.request()
    assert call.down.status == 503
    h = harness(mitigation("oc", PAST, ON_APP, openCircuit=True))
    cluster = h.action().choices[0].cluster
    assert cluster is not None and cluster.guard.admit(0.0) == b""


def split_route() -> dict[str, Any]:
    rule = {"backendRefs": [{"name": "app", "weight": 90}, {"name": "alt", "weight": 10}]}
    return route("api", [rule])


def test_a_weight_shift_moves_a_share_of_the_rule_total() -> None:
    m = mitigation(
        "sw", LIVE, ON_API, shiftWeight={"fromBackend": "app", "toBackend": "alt", "percent": 50}
    )
    h = ExchangeHarness(dump(gateway(), two_endpoints(), backend("alt", 9002), split_route(), m))
    action = h.action()
    assert action.cumulative == [40, 100] and action.total_weight == 100
    whole = mitigation(
        "sw", LIVE, ON_API, shiftWeight={"fromBackend": "app", "toBackend": "alt", "percent": 100}
    )
    h = ExchangeHarness(
        dump(gateway(), two_endpoints(), backend("alt", 9002), split_route(), whole)
    )
    action = h.action()
    assert action.cumulative == [0, 100] and action.single is action.choices[1]


def limited(*extra: dict[str, Any]) -> ExchangeHarness:
    policy = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "limits"},
        "spec": {
            "targetRefs": [{"kind": "HTTPRoute", "name": "api"}],
            "rateLimit": {"rules": [{"limit": {"requests": 100, "unit": "Second"}, "burst": 40}]},
        },
    }
    return harness(policy, *extra)


def test_a_tightened_rate_limit_cuts_requests_and_burst_under_its_own_name() -> None:
    action = limited().action()
    assert action.rate_limit is not None
    assert action.rate_limit.rules[0].limit.requests == 100
    action = limited(mitigation("rl", LIVE, ON_API, rateLimitPercent=25)).action()
    assert action.rate_limit is not None
    rule = action.rate_limit.rules[0]
    assert (rule.limit.requests, rule.burst) == (25, 10)
    assert action.rate_limit_name == "default/limits~25%"


def test_blocked_consumers_are_refused_after_authentication() -> None:
    h = harness(mitigation("bc", LIVE, ON_API, blockConsumers=["mallory"]))
    (flt,) = h.action().request_filters
    assert isinstance(flt, ConsumerBlockFilter)
    ctx = FilterContext(Any, RequestHead(b"GET", b"/", b"", []), None, b"10.0.0.1")  # type: ignore[arg-type]
    assert flt.on_request(ctx) is None  # not authenticated: no Consumer to block
    ctx.principal = Principal("alice")
    assert flt.on_request(ctx) is None
    ctx.principal = Principal("mallory")
    verdict = flt.on_request(ctx)
    assert verdict is not None and verdict.status == 403


def test_a_mitigation_of_a_backend_takes_only_backend_fields() -> None:
    bad = mitigation("x", LIVE, ON_APP, shed={"percent": 10})
    resources, problems = parse_text(
        dump(gateway(), two_endpoints(), route("api", [to("app")]), bad), "m.yaml"
    )
    if not problems:
        _, problems = validate(resources)
    assert any("only ejectEndpoints and openCircuit" in str(p) for p in problems), problems


@pytest.mark.parametrize("field", [{"ejectEndpoints": ["127.0.0.1:9000"]}, {"openCircuit": True}])
def test_backend_fields_need_a_backend_target(field: dict[str, Any]) -> None:
    bad = mitigation("x", LIVE, ON_API, **field)
    resources, problems = parse_text(
        dump(gateway(), two_endpoints(), route("api", [to("app")]), bad), "m.yaml"
    )
    if not problems:
        _, problems = validate(resources)
    assert any("need targetRef.kind Backend" in str(p) for p in problems), problems


def sandbox(name: str, key: str) -> dict[str, Any]:
    override = {"backend": "app", "endpoints": [{"address": "127.0.0.1:9100"}]}
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": name},
        "spec": {"overrides": [override], "routingKey": key},
    }


def test_a_pinned_routing_key_goes_to_the_baseline() -> None:
    boxes = (sandbox("a", "ka"), sandbox("b", "kb"))
    (choice,) = harness(*boxes).action().choices
    assert sorted(choice.overrides) == [b"ka", b"kb"]
    (choice,) = harness(*boxes, mitigation("pk", LIVE, ON_API, pinKeys=["ka"])).action().choices
    assert sorted(choice.overrides) == [b"kb"]
    (choice,) = harness(*boxes, mitigation("pk", PAST, ON_API, pinKeys=["ka"])).action().choices
    assert sorted(choice.overrides) == [b"ka", b"kb"]
