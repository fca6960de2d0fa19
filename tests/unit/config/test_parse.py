"""Documents → typed resources: located schema errors, strict scalars, Gateway API defaults."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.model.backend import BackendObject
from turnout.config.model.gateway import GatewayObject
from turnout.config.model.routes import HTTPPathMatch, HTTPRouteObject
from turnout.config.parse import parse_text

ROUTE_META = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: web
"""
ROUTE_HEAD = ROUTE_META + "spec:\n"


def problems_of(text: str) -> list[str]:
    _, problems = parse_text(text, "routes.yaml")
    return [str(p) for p in problems]


def parse_one(text: str) -> Any:
    resources, problems = parse_text(text, "x.yaml")
    assert problems == []
    assert len(resources) == 1
    return resources[0].obj


def test_unknown_field_names_file_line_column_object_and_path() -> None:
    text = ROUTE_HEAD + "  rules:\n  - matchs:\n    - path: {type: Exact, value: /}\n"

    assert problems_of(text) == [
        "routes.yaml:8:5: HTTPRoute web/shop: spec.rules[0].matchs: unknown field"
    ]


def located(text: str, anchor: str, path: str, message: str) -> str:
    """The problem line expected for the first occurrence of ``anchor`` in ``text``."""
    before, _, _ = text.partition(anchor)
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    return f"routes.yaml:{line}:{column}: HTTPRoute web/shop: {path}: {message}"


# (spec text, where the problem points, field path, message)
WRONG_VALUES = [
    (
        "  rules:\n  - backendRefs: [{name: b, port: '80'}]\n",
        "port: '80'",
        "spec.rules[0].backendRefs[0].port",
        "Input should be a valid integer",
    ),
    (
        "  rules:\n  - backendRefs: [{name: b, port: 70000}]\n",
        "port: 70000",
        "spec.rules[0].backendRefs[0].port",
        "Input should be less than or equal to 65535",
    ),
    (
        "  rules:\n  - matches: [{path: {type: Prefix}}]\n",
        "type: Prefix",
        "spec.rules[0].matches[0].path.type",
        "Input should be 'Exact', 'PathPrefix' or 'RegularExpression'",
    ),
    (
        "  rules:\n  - matches: [{headers: [{name: x, value: 1}]}]\n",
        "value: 1",
        "spec.rules[0].matches[0].headers[0].value",
        "Input should be a valid string",
    ),
    (
        "  rules:\n  - matches: [{method: get}]\n",
        "method: get",
        "spec.rules[0].matches[0].method",
        "Input should be 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', "
        "'TRACE' or 'PATCH'",
    ),
    (
        "  hostnames: [shop.example.com, 10.0.0.1]\n",
        "10.0.0.1",
        "spec.hostnames[1]",
        "'10.0.0.1': hostnames may not be IP addresses",
    ),
    (
        "  hostnames: [Shop.Example.com]\n",
        "Shop.Example.com",
        "spec.hostnames[0]",
        "'Shop.Example.com' is not a valid hostname: lowercase DNS labels, optionally "
        "prefixed by '*.'",
    ),
    (
        "  rules:\n  - timeouts: {request: 10}\n",
        "request: 10",
        "spec.rules[0].timeouts.request",
        "Input should be a valid string",
    ),
    (
        "  rules:\n  - timeouts: {request: 1d}\n",
        "request: 1d",
        "spec.rules[0].timeouts.request",
        "invalid duration '1d': expected e.g. 10s, 500ms, 1m30s (units h, m, s, ms)",
    ),
    (
        "  rules:\n  - backendRefs: [{name: b, weight: -1}]\n",
        "weight: -1",
        "spec.rules[0].backendRefs[0].weight",
        "Input should be greater than or equal to 0",
    ),
    (
        "  rules:\n  - filters:\n    - type: RequestHeaderModifier\n"
        '      requestHeaderModifier: {set: [{name: x, value: "a\\r\\nb"}]}\n',
        'value: "a',
        "spec.rules[0].filters[0].requestHeaderModifier.set[0].value",
        "header values may not contain CR, LF or NUL",
    ),
    (
        "  rules:\n  - filters: [{type: Mirror}]\n",
        "type: Mirror",
        "spec.rules[0].filters[0].type",
        "Input should be 'RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', "
        "'RequestRedirect', 'URLRewrite', 'ExtensionRef', 'CORS' or 'ExternalAuth'",
    ),
    (
        "  rules: {}\n",
        "rules: {}",
        "spec.rules",
        "Input should be a valid tuple",
    ),
]


@pytest.mark.parametrize(("spec", "anchor", "path", "message"), WRONG_VALUES)
def test_wrong_values_are_located_errors(spec: str, anchor: str, path: str, message: str) -> None:
    text = ROUTE_HEAD + spec

    assert problems_of(text) == [located(text, anchor, path, message)]


def test_missing_required_fields_are_named() -> None:
    text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {}\nspec: {}\n"

    assert problems_of(text) == [
        "routes.yaml:3:1: Gateway default/?: metadata.name: required field is missing",
        "routes.yaml:4:1: Gateway default/?: spec.gatewayClassName: required field is missing",
        "routes.yaml:4:1: Gateway default/?: spec.listeners: required field is missing",
    ]


def test_wrong_api_version_is_located() -> None:
    text = "apiVersion: gateway.networking.k8s.io/v2\nkind: HTTPRoute\nmetadata: {name: a}\n"
    text += "spec: {}\n"

    assert problems_of(text) == [
        "routes.yaml:1:1: HTTPRoute default/a: apiVersion: Input should be "
        "'gateway.networking.k8s.io/v1' or 'gateway.networking.k8s.io/v1beta1'"
    ]


@pytest.mark.parametrize(
    ("kind", "advice"),
    [
        ("Service", "Service is a Kubernetes object; outside a cluster declare a turnout.dev"),
        ("Deployment", "Deployment is a Kubernetes workload, not gateway configuration"),
        ("UDPRoute", "UDPRoute is not supported"),
        ("Sprocket", "unknown kind 'Sprocket'; known: Namespace, Secret, GatewayClass, Gateway"),
    ],
)
def test_foreign_and_unknown_kinds_are_refused_with_advice(kind: str, advice: str) -> None:
    text = f"apiVersion: v1\nmetadata: {{name: a}}\nkind: {kind}\n"

    resources, problems = parse_text(text, "k.yaml")

    assert resources == []
    assert len(problems) == 1
    assert str(problems[0]).startswith(f"k.yaml:3:1: kind: {advice}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "k.yaml:1: each document must be a mapping (an object)"),
        ("metadata: {name: a}\n", "k.yaml:1: kind: missing or invalid 'kind'"),
        ("kind: [Gateway]\n", "k.yaml:1:1: kind: missing or invalid 'kind'"),
    ],
)
def test_documents_that_are_not_objects_are_refused(text: str, expected: str) -> None:
    resources, problems = parse_text(text, "k.yaml")

    assert resources == []
    assert [str(p) for p in problems] == [expected]


def test_bad_documents_do_not_hide_good_ones() -> None:
    text = (
        "kind: Service\n---\n"
        "apiVersion: turnout.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\n"
        "spec: {endpoints: [{address: '127.0.0.1:80'}]}\n"
    )

    resources, problems = parse_text(text, "k.yaml", first_order=5)

    assert len(problems) == 1
    assert [r.ref for r in resources] == ["Backend default/b"]
    assert resources[0].origin.line == 3
    assert resources[0].origin.order == 5


def test_route_defaults_follow_the_gateway_api() -> None:
    route = parse_one(
        ROUTE_HEAD + "  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: b}]\n"
    )

    assert isinstance(route, HTTPRouteObject)
    parent = route.spec.parent_refs[0]
    assert (parent.group, parent.kind, parent.namespace) == (
        "gateway.networking.k8s.io",
        "Gateway",
        None,
    )
    rule = route.spec.rules[0]
    assert len(rule.matches) == 1
    assert rule.matches[0].path == HTTPPathMatch(type="PathPrefix", value="/")
    assert rule.matches[0].method is None
    ref = rule.backend_refs[0]
    assert (ref.group, ref.kind, ref.weight, ref.port) == ("", "Service", 1, None)


@pytest.mark.parametrize(
    "spec",
    [
        "spec: {}\n",  # no rules: one rule with the default match
        "spec: {rules: [{}]}\n",  # a rule without matches
        "spec: {rules: [{matches: [{}]}]}\n",  # a match without a path
        "spec: {rules: [{matches: [{path: {}}]}]}\n",  # a path without type or value
    ],
)
def test_the_default_match_is_path_prefix_slash(spec: str) -> None:
    route = parse_one(ROUTE_META + spec)

    assert [m.path for r in route.spec.rules for m in r.matches] == [
        HTTPPathMatch(type="PathPrefix", value="/")
    ]


def test_gateway_and_backend_defaults() -> None:
    gw = parse_one(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
        "spec:\n  gatewayClassName: turnout\n"
        "  listeners: [{name: http, port: 80, protocol: HTTP}]\n"
    )
    backend = parse_one(
        "apiVersion: turnout.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\n"
        "spec: {loadBalancer: round_robin}\n"
    )

    assert isinstance(gw, GatewayObject)
    assert gw.metadata.namespace == "default"
    listener = gw.spec.listeners[0]
    assert listener.hostname is None
    assert listener.allowed_routes.namespaces.from_ == "Same"
    assert listener.allowed_routes.kinds == ()
    assert gw.spec.addresses == ()
    assert isinstance(backend, BackendObject)
    assert backend.spec.load_balancer.type == "RoundRobin"  # the old spelling is accepted
    assert backend.spec.app_protocol == "http"
    assert backend.spec.timeout.connect == "5s"
    assert backend.spec.connection_pool.max_idle_per_endpoint == 128
    assert backend.spec.endpoints == ()


def test_redirect_status_defaults_to_302() -> None:
    route = parse_one(
        ROUTE_HEAD + "  rules:\n  - filters:\n    - type: RequestRedirect\n"
        "      requestRedirect: {scheme: https}\n"
    )

    redirect = route.spec.rules[0].filters[0].request_redirect
    assert redirect.status_code == 302
    assert (redirect.hostname, redirect.port, redirect.path) == (None, None, None)


def test_manifests_exported_from_a_cluster_parse() -> None:
    route = parse_one(
        ROUTE_HEAD.replace(
            "  namespace: web\n",
            "  namespace: web\n  creationTimestamp: '2024-01-01T00:00:00Z'\n"
            "  resourceVersion: '42'\n  generation: 3\n  uid: abc\n  managedFields: []\n",
        )
        + "  {}\nstatus: {parents: []}\n"
    )

    assert route.metadata.creation_timestamp == "2024-01-01T00:00:00Z"


def test_snake_case_field_names_are_unknown_fields() -> None:
    text = ROUTE_HEAD + "  rules:\n  - backend_refs: [{name: b}]\n"

    assert problems_of(text) == [
        "routes.yaml:8:5: HTTPRoute web/shop: spec.rules[0].backend_refs: unknown field"
    ]
