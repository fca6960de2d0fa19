"""Which SecurityPolicy a rule gets: the most specific attachment, applied whole."""

from __future__ import annotations

from typing import Any

from turnout.config.model.routes import HTTPRouteObject
from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.proxy.filters.policy import PolicyIndex
from turnout.testing.manifests import backend, dump, gateway, route, to


def sp(name: str, target: dict[str, Any], stamp: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if stamp:
        meta["creationTimestamp"] = stamp
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": meta,
        "spec": {"targetRefs": [target], "cors": {"allowOrigins": ["*"]}},
    }


def test_most_specific_policy_wins_and_oldest_among_equals() -> None:
    text = dump(
        gateway(),
        backend("b", 8080),
        route("api", [{**to("b", "/x"), "name": "x"}, to("b", "/y")]),
        route("other", [to("b", "/z")]),
        sp("on-gateway", {"kind": "Gateway", "name": "gw"}),
        sp("on-listener", {"kind": "Gateway", "name": "gw", "sectionName": "http"}),
        sp("on-route-new", {"kind": "HTTPRoute", "name": "api"}, "2026-02-01T00:00:00Z"),
        sp("on-route-old", {"kind": "HTTPRoute", "name": "api"}, "2026-01-01T00:00:00Z"),
        sp("on-rule", {"kind": "HTTPRoute", "name": "api", "sectionName": "x"}),
    )
    resources, problems = parse_text(text, "m.yaml")
    assert problems == []
    config, _ = validate(resources)
    index = PolicyIndex(config)
    routes = {r.obj.metadata.name: r.obj for r in resources if isinstance(r.obj, HTTPRouteObject)}
    api, other = routes["api"], routes["other"]
    via = ((("default", "gw")), "http")

    def chosen(r: HTTPRouteObject, rule: int, gw: Any = via) -> str | None:
        policy = index.effective(r, r.spec.rules[rule], gw).security
        return policy.metadata.name if policy is not None else None

    assert chosen(api, 0) == "on-rule"
    assert chosen(api, 1) == "on-route-old"
    assert chosen(other, 0) == "on-listener"
    assert chosen(other, 0, (("default", "gw"), "https")) == "on-gateway"
    assert chosen(other, 0, None) is None
    # A Gateway policy makes the snapshot compile that Gateway's rules per listener.
    assert ("default", "gw") in index.gateway
    policy = index.effective(api, api.spec.rules[0], via).security
    assert policy is not None
    assert index.auth_filter(policy) is index.auth_filter(policy)  # compiled once
