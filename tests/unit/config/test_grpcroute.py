"""GRPCRoute matches as path matches, and GRPCRoutes through validation."""

from __future__ import annotations

import re
from typing import Any

import pytest

from turnout.config.configset import ConfigSet
from turnout.config.grpcroute import as_http, method_path
from turnout.config.model.routes import GRPCMethodMatch, GRPCRouteObject, HTTPRouteObject
from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.testing.manifests import backend, dump, gateway


@pytest.mark.parametrize(
    ("match", "paths_in", "paths_out"),
    [
        ({"service": "shop.Orders", "method": "Get"}, ["/shop.Orders/Get"], ["/shop.Orders/List"]),
        ({"service": "shop.Orders"}, ["/shop.Orders/Get", "/shop.Orders/X"], ["/shopXOrders/Get"]),
        ({"method": "Get"}, ["/a.B/Get", "/c.D/Get"], ["/a.B/GetAll", "/Get"]),
        (
            {"type": "RegularExpression", "service": r"shop\..*", "method": "Get|List"},
            ["/shop.Orders/Get", "/shop.Items/List"],
            ["/shop.Orders/Delete", "/other.X/Get"],
        ),
    ],
)
def test_method_matches_become_path_matches(
    match: dict[str, str], paths_in: list[str], paths_out: list[str]
) -> None:
    path = method_path(GRPCMethodMatch.model_validate(match))
    assert path is not None

    def matches(p: str) -> bool:
        if path["type"] == "Exact":
            return p == path["value"]
        return re.fullmatch(path["value"], p) is not None

    assert all(matches(p) for p in paths_in)
    assert not any(matches(p) for p in paths_out)


def grpc_route(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["grpc.example.com"], "rules": rules},
    }


def test_a_grpcroute_validates_and_translates() -> None:
    route = grpc_route(
        "g",
        [
            {
                "matches": [
                    {
                        "method": {"service": "shop.Orders", "method": "Get"},
                        "headers": [{"name": "x-tenant", "value": "a"}],
                    }
                ],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"add": [{"name": "x-via", "value": "gw"}]},
                    }
                ],
                "backendRefs": [{"name": "orders", "port": 50051, "weight": 3}],
            }
        ],
    )
    resources, parse_problems = parse_text(
        dump(gateway(), backend("orders", 50051), route), "g.yaml"
    )
    assert parse_problems == []
    _, problems = validate(resources)
    assert problems == []
    obj = next(r.obj for r in resources if isinstance(r.obj, GRPCRouteObject))
    http = as_http(obj)
    assert http.kind == "GRPCRoute"
    m = http.spec.rules[0].matches[0]
    assert m.path is not None and m.path.value == "/shop.Orders/Get" and m.path.type == "Exact"
    assert m.headers[0].name == "x-tenant"
    assert http.spec.rules[0].backend_refs[0].weight == 3


def test_a_grpcroute_to_a_missing_backend_is_a_located_warning() -> None:
    route = grpc_route("g", [{"backendRefs": [{"name": "missing", "port": 1}]}])
    resources, _ = parse_text(dump(gateway(), route), "g.yaml")
    _, problems = validate(resources)
    assert [(p.severity, p.obj) for p in problems] == [("warning", "GRPCRoute default/g")]
    assert problems[0].line is not None


def test_policies_for_an_httproute_do_not_reach_a_grpcroute_of_the_same_name() -> None:
    from turnout.proxy.filters.policy import PolicyIndex

    http = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "echo"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "b"}]}]},
    }
    grpc = grpc_route("echo", [{"backendRefs": [{"name": "b"}]}])
    policy = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "retry"},
        "spec": {
            "targetRefs": [{"kind": "HTTPRoute", "name": "echo"}],
            "retry": {"numRetries": 2},
        },
    }
    resources, problems = parse_text(dump(gateway(), backend("b", 1), http, grpc, policy), "p.yaml")
    assert problems == []
    config = ConfigSet(resources)
    index = PolicyIndex(config)
    by_kind: dict[str, HTTPRouteObject] = {}
    for r in config.http_routes():
        assert isinstance(r.obj, HTTPRouteObject)
        by_kind[r.obj.kind] = r.obj
    for kind, expected in (("HTTPRoute", True), ("GRPCRoute", False)):
        route = by_kind[kind]
        effective = index.effective(route, route.spec.rules[0], None)
        assert (effective.retry is not None) is expected, kind
