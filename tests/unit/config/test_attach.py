"""Route attachment: parentRef sectionName/port, allowedRoutes, listener hostnames."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.attach import (
    RouteAttachments,
    attach_route,
    namespace_labels,
    selector_matches,
)
from turnout.config.model.gateway import GatewayObject, LabelSelector
from turnout.config.model.routes import HTTPRouteObject

LISTENERS = [
    {"name": "plain", "port": 80, "protocol": "HTTP"},
    {"name": "shop", "port": 80, "protocol": "HTTP", "hostname": "shop.example.com"},
    {"name": "wild", "port": 8080, "protocol": "HTTP", "hostname": "*.example.com"},
]


def make_gateway(
    listeners: list[dict[str, Any]] = LISTENERS, namespace: str = "infra"
) -> GatewayObject:
    return GatewayObject.model_validate(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": namespace},
            "spec": {"gatewayClassName": "turnout", "listeners": listeners},
        }
    )


def make_route(
    parent_refs: list[dict[str, Any]], hostnames: list[str] | None = None, namespace: str = "infra"
) -> HTTPRouteObject:
    spec: dict[str, Any] = {"parentRefs": parent_refs}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return HTTPRouteObject.model_validate(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": namespace},
            "spec": spec,
        }
    )


def attach(
    route: HTTPRouteObject,
    gateway: GatewayObject | None = None,
    namespaces: dict[str, dict[str, str]] | None = None,
) -> RouteAttachments:
    gw = gateway or make_gateway()
    return attach_route(route, {(gw.metadata.namespace, gw.metadata.name): gw}, namespaces or {})


def attached(outcome: RouteAttachments) -> list[tuple[str, tuple[str, ...] | None]]:
    return [(a.listener.name, a.hostnames) for a in outcome.attached]


def refused(outcome: RouteAttachments) -> list[tuple[int, str]]:
    return [(r.parent_index, r.reason) for r in outcome.refused]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ({}, [("plain", None), ("shop", ("shop.example.com",)), ("wild", ("*.example.com",))]),
        ({"sectionName": "shop"}, [("shop", ("shop.example.com",))]),
        ({"port": 80}, [("plain", None), ("shop", ("shop.example.com",))]),
        ({"port": 8080}, [("wild", ("*.example.com",))]),
        ({"sectionName": "plain", "port": 80}, [("plain", None)]),
    ],
)
def test_parent_ref_picks_listeners_by_section_name_and_port(
    ref: dict[str, Any], expected: list[tuple[str, tuple[str, ...] | None]]
) -> None:
    outcome = attach(make_route([{"name": "gw", **ref}]))

    assert attached(outcome) == expected
    assert outcome.refused == ()


@pytest.mark.parametrize(
    "ref",
    [
        {"sectionName": "nope"},
        {"port": 81},
        {"sectionName": "plain", "port": 8080},  # both must match the same listener
    ],
)
def test_no_listener_matching_section_name_or_port_refuses(ref: dict[str, Any]) -> None:
    outcome = attach(make_route([{"name": "gw", **ref}]))

    assert attached(outcome) == []
    assert refused(outcome) == [(0, "NoMatchingParent")]
    assert outcome.refused[0].message == "no listener matches sectionName/port"


def test_missing_gateway_and_wrong_parent_kind_refuse() -> None:
    outcome = attach(
        make_route(
            [
                {"name": "other"},
                {"name": "gw", "namespace": "elsewhere"},
                {"name": "gw", "kind": "Service", "group": ""},
                {"name": "gw", "sectionName": "plain"},
            ]
        )
    )

    assert refused(outcome) == [
        (0, "NoMatchingParent"),
        (1, "NoMatchingParent"),
        (2, "NoMatchingParent"),
    ]
    assert outcome.refused[1].message == "Gateway elsewhere/gw does not exist"
    assert attached(outcome) == [("plain", None)]


def test_duplicate_parent_refs_attach_once() -> None:
    outcome = attach(
        make_route([{"name": "gw", "sectionName": "plain"}, {"name": "gw", "port": 80}])
    )

    assert attached(outcome) == [("plain", None), ("shop", ("shop.example.com",))]


def with_allowed(allowed: dict[str, Any]) -> GatewayObject:
    return make_gateway([{"name": "l", "port": 80, "protocol": "HTTP", "allowedRoutes": allowed}])


DECLARED = {"team-a": {"team": "a", "env": "prod"}, "team-b": {"team": "b"}}


@pytest.mark.parametrize(
    ("allowed", "route_ns", "ok"),
    [
        ({}, "infra", True),  # default: Same
        ({}, "team-a", False),
        ({"namespaces": {"from": "Same"}}, "team-a", False),
        ({"namespaces": {"from": "All"}}, "team-a", True),
        ({"namespaces": {"from": "All"}}, "undeclared", True),
        (
            {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}},
            "team-a",
            True,
        ),
        (
            {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}},
            "team-b",
            False,
        ),
        (
            {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}},
            "infra",  # the Gateway's own namespace is not special for Selector
            False,
        ),
        (
            # The implicit label works for namespaces no Namespace object declares.
            {
                "namespaces": {
                    "from": "Selector",
                    "selector": {"matchLabels": {"kubernetes.io/metadata.name": "undeclared"}},
                }
            },
            "undeclared",
            True,
        ),
        (
            {
                "namespaces": {
                    "from": "Selector",
                    "selector": {
                        "matchExpressions": [
                            {"key": "team", "operator": "In", "values": ["a", "b"]},
                            {"key": "env", "operator": "NotIn", "values": ["prod"]},
                        ]
                    },
                }
            },
            "team-b",
            True,
        ),
        (
            {
                "namespaces": {
                    "from": "Selector",
                    "selector": {
                        "matchExpressions": [
                            {"key": "team", "operator": "In", "values": ["a", "b"]},
                            {"key": "env", "operator": "NotIn", "values": ["prod"]},
                        ]
                    },
                }
            },
            "team-a",
            False,
        ),
        ({"kinds": [{"kind": "HTTPRoute"}], "namespaces": {"from": "All"}}, "team-a", True),
        ({"kinds": [{"kind": "GRPCRoute"}], "namespaces": {"from": "All"}}, "team-a", False),
        (
            {
                "kinds": [{"kind": "HTTPRoute", "group": "example.com"}],
                "namespaces": {"from": "All"},
            },
            "team-a",
            False,
        ),
    ],
)
def test_allowed_routes(allowed: dict[str, Any], route_ns: str, ok: bool) -> None:
    outcome = attach(
        make_route([{"name": "gw", "namespace": "infra"}], namespace=route_ns),
        with_allowed(allowed),
        DECLARED,
    )

    if ok:
        assert attached(outcome) == [("l", None)]
    else:
        assert attached(outcome) == []
        assert refused(outcome) == [(0, "NotAllowedByListeners")]


@pytest.mark.parametrize(
    ("requirement", "labels", "expected"),
    [
        ({"key": "k", "operator": "In", "values": ["v"]}, {"k": "v"}, True),
        ({"key": "k", "operator": "In", "values": ["v"]}, {"k": "w"}, False),
        ({"key": "k", "operator": "In", "values": ["v"]}, {}, False),
        ({"key": "k", "operator": "NotIn", "values": ["v"]}, {"k": "w"}, True),
        ({"key": "k", "operator": "NotIn", "values": ["v"]}, {}, True),
        ({"key": "k", "operator": "NotIn", "values": ["v"]}, {"k": "v"}, False),
        ({"key": "k", "operator": "Exists"}, {"k": ""}, True),
        ({"key": "k", "operator": "Exists"}, {}, False),
        ({"key": "k", "operator": "DoesNotExist"}, {}, True),
        ({"key": "k", "operator": "DoesNotExist"}, {"k": "v"}, False),
    ],
)
def test_match_expressions(
    requirement: dict[str, Any], labels: dict[str, str], expected: bool
) -> None:
    selector = LabelSelector.model_validate({"matchExpressions": [requirement]})

    assert selector_matches(selector, labels) is expected


def test_an_empty_selector_matches_every_namespace() -> None:
    assert selector_matches(LabelSelector.model_validate({}), {})


def test_namespace_labels_add_the_implicit_name_label() -> None:
    assert namespace_labels("team-a", DECLARED) == {
        "team": "a",
        "env": "prod",
        "kubernetes.io/metadata.name": "team-a",
    }
    assert namespace_labels("x", {}) == {"kubernetes.io/metadata.name": "x"}
    assert DECLARED["team-a"] == {"team": "a", "env": "prod"}  # not modified


@pytest.mark.parametrize(
    ("hostnames", "expected"),
    [
        (
            ["a.example.com"],
            [("plain", ("a.example.com",)), ("wild", ("a.example.com",))],
        ),
        (
            ["shop.example.com", "other.org"],
            [
                ("plain", ("shop.example.com", "other.org")),
                ("shop", ("shop.example.com",)),
                ("wild", ("shop.example.com",)),
            ],
        ),
        (
            ["*.example.com"],
            [
                ("plain", ("*.example.com",)),
                ("shop", ("shop.example.com",)),
                ("wild", ("*.example.com",)),
            ],
        ),
        (["example.com"], [("plain", ("example.com",))]),
    ],
)
def test_listener_hostnames_narrow_the_route(
    hostnames: list[str], expected: list[tuple[str, tuple[str, ...] | None]]
) -> None:
    outcome = attach(make_route([{"name": "gw"}], hostnames))

    assert attached(outcome) == expected
    assert outcome.refused == ()


def test_no_hostname_intersection_refuses() -> None:
    gw = make_gateway([LISTENERS[1], LISTENERS[2]])

    outcome = attach(make_route([{"name": "gw"}], ["other.org", "example.com"]), gw)

    assert attached(outcome) == []
    assert refused(outcome) == [(0, "NoMatchingListenerHostname")]
