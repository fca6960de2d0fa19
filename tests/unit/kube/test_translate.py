"""Cluster objects → manifests: ownership, Services → Backends, ReferenceGrants, cleaning.

The EndpointSlices below are recorded shapes of ``discovery.k8s.io/v1`` (which the test
API server, v1.20, does not serve) and ``v1beta1`` objects.
"""

from __future__ import annotations

from typing import Any

from turnout.config.parse import parse_documents
from turnout.config.validate import validate
from turnout.config.yamldocs import Document
from turnout.control.kube.services import ready_endpoints
from turnout.control.kube.translate import DEFAULT_CONTROLLER, clean, translate

GW = "gateway.networking.k8s.io/v1"


def _meta(name: str, ns: str | None = "default", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": "u-" + name, "resourceVersion": "7", **extra}
    if ns is not None:
        meta["namespace"] = ns
    return meta


def _cluster(**extra: dict[Any, Any]) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    objs: dict[str, list[dict[str, Any]]] = {
        "GatewayClass": [
            {
                "apiVersion": GW,
                "kind": "GatewayClass",
                "metadata": _meta("turnout", None),
                "spec": {"controllerName": DEFAULT_CONTROLLER},
            },
            {
                "apiVersion": GW,
                "kind": "GatewayClass",
                "metadata": _meta("other", None),
                "spec": {"controllerName": "example.com/other"},
            },
        ],
        "Gateway": [
            {
                "apiVersion": GW,
                "kind": "Gateway",
                "metadata": _meta("web", generation=2),
                "spec": {
                    "gatewayClassName": "turnout",
                    "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}],
                },
                "status": {"conditions": []},
            },
            {
                "apiVersion": GW,
                "kind": "Gateway",
                "metadata": _meta("theirs"),
                "spec": {
                    "gatewayClassName": "other",
                    "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
                },
            },
        ],
        "HTTPRoute": [
            {
                "apiVersion": GW,
                "kind": "HTTPRoute",
                "metadata": _meta("orders"),
                "spec": {
                    "parentRefs": [{"name": "web"}, {"name": "theirs"}],
                    "rules": [{"backendRefs": [{"name": "orders", "port": 80}]}],
                },
            },
            {
                "apiVersion": GW,
                "kind": "HTTPRoute",
                "metadata": _meta("not-ours"),
                "spec": {
                    "parentRefs": [{"name": "theirs"}],
                    "rules": [{"backendRefs": [{"name": "orders", "port": 80}]}],
                },
            },
        ],
        "Service": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta("orders"),
                "spec": {
                    "ports": [
                        {"name": "http", "port": 80, "targetPort": 8080},
                        {"name": "admin", "port": 9000},
                    ]
                },
            },
        ],
        "EndpointSlice": [
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": _meta("orders-abc", labels={"kubernetes.io/service-name": "orders"}),
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9000}],
                "endpoints": [
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                    {
                        "addresses": ["10.0.0.3"],
                        "conditions": {"ready": False, "serving": True, "terminating": True},
                    },
                    {"addresses": ["10.0.0.4"]},  # no conditions: ready
                ],
            },
        ],
    }
    for kind, items in extra.items():
        objs[kind] = list(items.values())
    return {
        kind: {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in items}
        for kind, items in objs.items()
    }


def _validated(manifests: list[dict[str, Any]]) -> Any:
    docs = [Document("kubernetes", i, m, 0) for i, m in enumerate(manifests)]
    resources, problems = parse_documents(docs)
    assert problems == []
    return validate(resources)


def test_only_our_class_gateways_and_routes_are_taken() -> None:
    t = translate(_cluster())
    names = sorted((m["kind"], m["metadata"]["name"]) for m in t.manifests)
    assert ("GatewayClass", "turnout") in names and ("GatewayClass", "other") not in names
    assert ("Gateway", "web") in names and ("Gateway", "theirs") not in names
    assert ("HTTPRoute", "orders") in names and ("HTTPRoute", "not-ours") not in names
    route = next(m for m in t.manifests if m["kind"] == "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "web"}]  # theirs is dropped from our copy
    assert t.parents[("HTTPRoute", "default", "orders")] == [{"name": "web"}]


def test_service_backend_ref_becomes_ready_endpoints_of_its_port() -> None:
    t = translate(_cluster())
    route = next(m for m in t.manifests if m["kind"] == "HTTPRoute")
    ref = route["spec"]["rules"][0]["backendRefs"][0]
    assert ref == {"group": "turnout.dev", "kind": "Backend", "name": "orders.default.80"}
    backend = next(m for m in t.manifests if m["kind"] == "Backend")
    assert backend["spec"]["endpoints"] == [
        {"address": "10.0.0.1:8080"},
        {"address": "10.0.0.4:8080"},
    ]
    _config, problems = _validated(t.manifests)
    assert [p for p in problems if p.severity == "error"] == []


def test_server_fields_and_status_are_dropped() -> None:
    gw = _cluster()["Gateway"][("default", "web")]
    gw["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    out = clean(gw)
    assert "status" not in out
    assert out["metadata"] == {"name": "web", "namespace": "default", "generation": 2}


def test_v1beta1_slices_read_the_same_and_unnamed_ports_match() -> None:
    beta = {
        "apiVersion": "discovery.k8s.io/v1beta1",
        "kind": "EndpointSlice",
        "ports": [{"port": 5000}],
        "endpoints": [
            {"addresses": ["fd00::1"], "conditions": {"ready": True}},
            {"addresses": ["10.1.0.9"], "conditions": {"ready": True, "terminating": True}},
        ],
    }
    assert ready_endpoints([beta], "") == ["[fd00::1]:5000"]
    assert ready_endpoints([beta], "http") == []


def test_cross_namespace_service_needs_a_reference_grant() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("pay", "billing"),
        "spec": {"ports": [{"port": 80}]},
    }
    cluster = _cluster()
    cluster["Service"][("billing", "pay")] = svc
    route = cluster["HTTPRoute"][("default", "orders")]
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "pay", "namespace": "billing", "port": 80}]
    t = translate(cluster)
    copied = next(m for m in t.manifests if m["kind"] == "HTTPRoute")
    assert copied["spec"]["rules"][0]["backendRefs"][0]["namespace"] == "billing"  # untouched
    cluster["ReferenceGrant"] = {
        ("billing", "g"): {
            "kind": "ReferenceGrant",
            "metadata": _meta("g", "billing"),
            "spec": {
                "from": [
                    {
                        "group": "gateway.networking.k8s.io",
                        "kind": "HTTPRoute",
                        "namespace": "default",
                    }
                ],
                "to": [{"group": "", "kind": "Service"}],
            },
        }
    }
    t = translate(cluster)
    copied = next(m for m in t.manifests if m["kind"] == "HTTPRoute")
    assert copied["spec"]["rules"][0]["backendRefs"][0]["name"] == "pay.billing.80"


def _grpc_route(name: str, service: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "GRPCRoute",
        "metadata": _meta(name),
        "spec": {
            "parentRefs": [{"name": "web"}],
            "rules": [{"backendRefs": [{"name": service, "port": port}]}],
        },
    }


def test_grpc_route_service_backend_speaks_http2_and_http_route_keeps_http1() -> None:
    # the Service port names no appProtocol; the HTTPRoute "orders" uses the same one
    t = translate(_cluster(GRPCRoute={"g": _grpc_route("g", "orders", 80)}))
    backends = {m["metadata"]["name"]: m for m in t.manifests if m["kind"] == "Backend"}
    assert backends["orders.default.80.grpc"]["spec"]["appProtocol"] == "grpc"
    assert "appProtocol" not in backends["orders.default.80"]["spec"]
    grpc_route = next(m for m in t.manifests if m["kind"] == "GRPCRoute")
    ref = grpc_route["spec"]["rules"][0]["backendRefs"][0]
    assert ref["name"] == "orders.default.80.grpc"
    _config, problems = _validated(t.manifests)
    assert [p for p in problems if p.severity == "error"] == []


def test_a_service_port_app_protocol_is_kept_for_a_grpc_route() -> None:
    cluster = _cluster(GRPCRoute={"g": _grpc_route("g", "orders", 9000)})
    cluster["Service"][("default", "orders")]["spec"]["ports"][1]["appProtocol"] = "grpc"
    t = translate(cluster)
    backends = {m["metadata"]["name"]: m for m in t.manifests if m["kind"] == "Backend"}
    assert backends["orders.default.9000"]["spec"]["appProtocol"] == "grpc"
    assert "orders.default.9000.grpc" not in backends
