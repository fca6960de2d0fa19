"""Cross-object and semantic checks: located errors, and warnings that do not block a reload."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.parse import parse_text
from turnout.config.problems import ConfigError, Problem
from turnout.config.validate import validate, validate_or_raise
from turnout.config.validate.routes import path_match_problem
from turnout.testing.certs import CertificateAuthority
from turnout.testing.manifests import backend, dump, gateway, route


def check(*objects: dict[str, Any]) -> list[Problem]:
    resources, parse_problems = parse_text(dump(*objects), "m.yaml")
    assert parse_problems == []
    _, problems = validate(resources)
    return problems


def summary(problems: list[Problem]) -> list[tuple[str, str, str, str]]:
    return [(p.severity, p.obj, p.path, p.message) for p in problems]


def rule(**fields: Any) -> dict[str, Any]:
    return {"backendRefs": [{"name": "b"}], **fields}


def http_route(*rules: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return route("r", list(rules), **kw)


OK = (gateway(), backend("b", 8080))


def test_a_consistent_set_has_no_problems() -> None:
    assert check(*OK, http_route(rule())) == []


def test_duplicate_objects_are_errors_pointing_at_the_first() -> None:
    text = dump(backend("b", 1), backend("b", 2), backend("b", 3, namespace="other"))
    resources, _ = parse_text(text, "m.yaml")

    config, problems = validate(resources)

    second_doc = text.splitlines().index("---") + 2
    name_line = second_doc + text.splitlines()[second_doc - 1 :].index("  name: b")
    assert [str(p) for p in problems] == [
        f"m.yaml:{name_line}:3: Backend default/b: metadata.name: "
        "duplicate of the object at m.yaml:1"
    ]
    assert [r.ref for r in config.resources] == ["Backend default/b", "Backend other/b"]


@pytest.mark.parametrize(
    ("listeners", "expected"),
    [
        (
            [
                {"name": "a", "port": 80, "protocol": "HTTP"},
                {"name": "a", "port": 81, "protocol": "HTTP"},
            ],
            [("spec.listeners[1].name", "duplicate listener name 'a'")],
        ),
        (
            [
                {"name": "a", "port": 80, "protocol": "HTTP"},
                {"name": "b", "port": 80, "protocol": "HTTP"},
            ],
            [("spec.listeners[1].port", "listener conflicts with 'a': same port 80 and hostname")],
        ),
        (
            [
                {"name": "a", "port": 80, "protocol": "HTTP", "hostname": "a.example.com"},
                {"name": "b", "port": 80, "protocol": "HTTP", "hostname": "b.example.com"},
                {"name": "c", "port": 80, "protocol": "HTTP"},
            ],
            [],
        ),
        (
            [{"name": "a", "port": 443, "protocol": "HTTPS"}],
            [
                ("spec.listeners[0].tls", "an HTTPS listener needs tls settings"),
            ],
        ),
        ([{"name": "a", "port": 9000, "protocol": "TCP"}], []),
        (
            [{"name": "a", "port": 9000, "protocol": "TLS", "tls": {"mode": "Terminate"}}],
            [
                (
                    "spec.listeners[0].tls.mode",
                    "TLS listeners need tls.mode: Passthrough (terminating TLS on a TLS "
                    "listener is not supported yet; use an HTTPS listener to terminate)",
                )
            ],
        ),
        (
            [
                {"name": "a", "port": 9000, "protocol": "TCP"},
                {"name": "b", "port": 9000, "protocol": "HTTP", "hostname": "b.example.com"},
            ],
            [
                (
                    "spec.listeners[1].protocol",
                    "port 9000 has both TCP and HTTP(S) listeners; a port carries HTTP(S), "
                    "TCP or TLS passthrough, not a mix",
                )
            ],
        ),
        (
            [{"name": "a", "port": 80, "protocol": "HTTP", "tls": {"mode": "Terminate"}}],
            [("spec.listeners[0].tls", "tls must not be set on an HTTP listener")],
        ),
        (
            [
                {
                    "name": "a",
                    "port": 80,
                    "protocol": "HTTP",
                    "allowedRoutes": {"namespaces": {"from": "Selector"}},
                }
            ],
            [
                (
                    "spec.listeners[0].allowedRoutes.namespaces.selector",
                    "from: Selector requires a selector",
                )
            ],
        ),
        (
            [
                {
                    "name": "a",
                    "port": 80,
                    "protocol": "HTTP",
                    "allowedRoutes": {"kinds": [{"kind": "TLSRoute"}]},
                }
            ],
            [
                (
                    "spec.listeners[0].allowedRoutes.kinds[0]",
                    "route kind gateway.networking.k8s.io/TLSRoute is not supported on HTTP "
                    "listeners",
                )
            ],
        ),
    ],
)
def test_listener_problems_are_located_errors(
    listeners: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    problems = check(gateway(listeners=listeners))

    assert [(p.path, p.message) for p in problems] == expected
    assert all(p.severity == "error" and p.obj == "Gateway default/gw" for p in problems)


def test_gateway_addresses_must_be_ip_addresses() -> None:
    gw = gateway()
    gw["spec"]["addresses"] = [
        {"value": "::1"},
        {"value": "localhost"},
        {"type": "Hostname", "value": "gw.example.com"},
    ]

    assert [(p.path, p.message) for p in check(gw)] == [
        ("spec.addresses[1].value", "'localhost' is not an IP address"),
        ("spec.addresses[2].type", "address type 'Hostname' is not supported (use IPAddress)"),
    ]


FILTER_CASES = [
    (
        rule(
            filters=[
                {
                    "type": "RequestMirror",
                    "requestMirror": {
                        "backendRef": {"name": "b"},
                        "percent": 5,
                        "fraction": {"numerator": 3, "denominator": 2},
                    },
                }
            ]
        ),
        [
            ("spec.rules[0].filters[0].requestMirror", "give percent or fraction, not both"),
            (
                "spec.rules[0].filters[0].requestMirror.fraction",
                "the numerator may not exceed the denominator",
            ),
        ],
    ),
    (
        rule(filters=[{"type": "CORS", "cors": {}}]),
        [("spec.rules[0].filters[0].type", "the CORS filter is not supported yet")],
    ),
    (
        rule(
            filters=[
                {"type": "ExtensionRef", "extensionRef": {"group": "g", "kind": "K", "name": "n"}}
            ]
        ),
        [
            (
                "spec.rules[0].filters[0].extensionRef.kind",
                "unsupported extension g/K (use group turnout.dev, kind FilterPlugin)",
            )
        ],
    ),
    (
        rule(filters=[{"type": "RequestHeaderModifier"}]),
        [
            (
                "spec.rules[0].filters[0].type",
                "filter type RequestHeaderModifier requires requestHeaderModifier",
            )
        ],
    ),
    (
        rule(
            filters=[
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {},
                    "urlRewrite": {"hostname": "x.example.com"},
                }
            ]
        ),
        [
            (
                "spec.rules[0].filters[0].urlRewrite",
                "urlRewrite must not be set for filter type RequestHeaderModifier",
            )
        ],
    ),
    (
        rule(
            filters=[
                {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}},
                {"type": "URLRewrite", "urlRewrite": {"hostname": "a.example.com"}},
            ]
        ),
        [("spec.rules[0].filters", "RequestRedirect and URLRewrite cannot be used together")],
    ),
    (
        rule(
            filters=[
                {"type": "URLRewrite", "urlRewrite": {"hostname": "a.example.com"}},
                {"type": "URLRewrite", "urlRewrite": {"hostname": "b.example.com"}},
            ]
        ),
        [("spec.rules[0].filters", "URLRewrite may appear at most once")],
    ),
    (
        rule(
            filters=[
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {
                        "set": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}],
                        "remove": ["Transfer-Encoding"],
                    },
                }
            ]
        ),
        [
            ("spec.rules[0].filters[0].requestHeaderModifier.set", "header names must be unique"),
            (
                "spec.rules[0].filters[0].requestHeaderModifier.remove[0]",
                "header 'transfer-encoding' is managed by the gateway",
            ),
        ],
    ),
    (
        rule(
            filters=[
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {
                        "set": [{"name": "Expect", "value": "100-continue"}],
                        "add": [{"name": "Trailer", "value": "x-t"}],
                        "remove": ["Proxy-Connection"],
                    },
                }
            ]
        ),
        [
            (
                "spec.rules[0].filters[0].requestHeaderModifier.set[0]",
                "header 'expect' is managed by the gateway",
            ),
            (
                "spec.rules[0].filters[0].requestHeaderModifier.add[0]",
                "header 'trailer' is managed by the gateway",
            ),
            (
                "spec.rules[0].filters[0].requestHeaderModifier.remove[0]",
                "header 'proxy-connection' is managed by the gateway",
            ),
        ],
    ),
    (
        {
            "matches": [{"path": {"type": "Exact", "value": "/a"}}],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}
                    },
                }
            ],
            "backendRefs": [{"name": "b"}],
        },
        [
            (
                "spec.rules[0].filters[0]",
                "ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
            )
        ],
    ),
    (
        {
            "matches": [
                {"path": {"type": "PathPrefix", "value": "/a"}},
                {"path": {"type": "RegularExpression", "value": "/b.*"}},
            ],
            "filters": [
                {
                    "type": "RequestRedirect",
                    "requestRedirect": {
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/c"}
                    },
                }
            ],
        },
        [
            (
                "spec.rules[0].filters[0]",
                "ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
            )
        ],
    ),
    (
        rule(
            filters=[
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplaceFullPath", "replacePrefixMatch": "/x"}},
                }
            ]
        ),
        [("spec.rules[0].filters[0]", "ReplaceFullPath requires replaceFullPath only")],
    ),
    (
        rule(
            filters=[
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "x"}},
                }
            ]
        ),
        [("spec.rules[0].filters[0]", "replaceFullPath must start with '/'")],
    ),
]


@pytest.mark.parametrize(("the_rule", "expected"), FILTER_CASES)
def test_filter_problems_are_located_errors(
    the_rule: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    problems = check(*OK, http_route(the_rule))

    assert [(p.path, p.message) for p in problems] == expected
    assert all(p.severity == "error" and p.obj == "HTTPRoute default/r" for p in problems)


def test_replace_prefix_match_on_path_prefix_rules_is_accepted() -> None:
    the_rule = rule(
        matches=[{"path": {"type": "PathPrefix", "value": "/a"}}, {"method": "GET"}],
        filters=[
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
            }
        ],
    )

    assert check(*OK, http_route(the_rule)) == []


@pytest.mark.parametrize(
    ("timeouts", "expected"),
    [
        (
            {"request": "1s", "backendRequest": "2s"},
            ["backendRequest must not be longer than request"],
        ),
        ({"request": "1m", "backendRequest": "60s"}, []),
        ({"request": "0s", "backendRequest": "10s"}, []),  # 0 disables the request timeout
        ({"backendRequest": "10s"}, []),
        ({"request": "10s", "backendRequest": "500ms"}, []),
    ],
)
def test_backend_request_timeout_may_not_exceed_the_request_timeout(
    timeouts: dict[str, str], expected: list[str]
) -> None:
    problems = check(*OK, http_route(rule(timeouts=timeouts)))

    assert [p.message for p in problems] == expected
    assert all(p.path == "spec.rules[0].timeouts.backendRequest" for p in problems)


@pytest.mark.parametrize(
    ("match", "path", "message"),
    [
        (
            {"path": {"type": "RegularExpression", "value": "/a(["}},
            "spec.rules[0].matches[0].path.value",
            "invalid regular expression: unterminated character set at position 3",
        ),
        (
            {"headers": [{"type": "RegularExpression", "name": "x", "value": "*"}]},
            "spec.rules[0].matches[0].headers[0].value",
            "invalid regular expression: nothing to repeat at position 0",
        ),
        (
            {"queryParams": [{"type": "RegularExpression", "name": "q", "value": "a{2,1}"}]},
            "spec.rules[0].matches[0].queryParams[0].value",
            "invalid regular expression: min repeat greater than max repeat at position 2",
        ),
        (
            {"headers": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]},
            "spec.rules[0].matches[0].headers",
            "header names must be unique",
        ),
        (
            {"queryParams": [{"name": "q", "value": "1"}, {"name": "q", "value": "2"}]},
            "spec.rules[0].matches[0].queryParams",
            "query parameter names must be unique",
        ),
        (
            {"path": {"type": "PathPrefix", "value": "/a//b"}},
            "spec.rules[0].matches[0].path.value",
            "path must not contain '//', '/./', '/../', '%2f', '#' or end in '/.' or '/..'",
        ),
        (
            {"path": {"type": "Exact", "value": "a"}},
            "spec.rules[0].matches[0].path.value",
            "path must start with '/'",
        ),
    ],
)
def test_bad_matches_are_located_errors(match: dict[str, Any], path: str, message: str) -> None:
    problems = check(*OK, http_route(rule(matches=[match])))

    assert summary(problems) == [("error", "HTTPRoute default/r", path, message)]


def test_a_bad_regex_error_points_at_its_line() -> None:
    text = dump(
        *OK,
        http_route(rule(matches=[{"path": {"type": "RegularExpression", "value": "(["}}])),
    )
    resources, _ = parse_text(text, "m.yaml")

    _, problems = validate(resources)

    assert len(problems) == 1
    assert problems[0].line is not None
    line_text = text.splitlines()[problems[0].line - 1]
    assert line_text.strip().startswith("value:")
    assert "([" in line_text


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        ("Exact", "/", True),
        ("PathPrefix", "/a/b/", True),
        ("PathPrefix", "/a/./b", False),
        ("PathPrefix", "/a/../b", False),
        ("PathPrefix", "/a/..", False),
        ("PathPrefix", "/a/.", False),
        ("Exact", "/a%2Fb", False),
        ("Exact", "/a%2fb", False),
        ("Exact", "/a#b", False),
        ("Exact", "/a.b/..c", True),
        ("RegularExpression", "no/slash/needed.*", True),
        ("RegularExpression", "(", False),
    ],
)
def test_path_match_values(kind: str, value: str, ok: bool) -> None:
    assert (path_match_problem(kind, value) is None) == ok


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        (
            (gateway(), http_route(rule())),
            [
                (
                    "warning",
                    "spec.rules[0].backendRefs[0].name",
                    "Backend default/b does not exist; requests answer 500",
                )
            ],
        ),
        (
            (*OK, http_route({"backendRefs": [{"name": "b", "kind": "ConfigMap"}]})),
            [
                (
                    "warning",
                    "spec.rules[0].backendRefs[0].kind",
                    "unsupported backend kind core/ConfigMap; requests answer 500",
                )
            ],
        ),
        (
            (*OK, http_route({"backendRefs": [{"name": "b", "namespace": "other"}]})),
            [
                (
                    "warning",
                    "spec.rules[0].backendRefs[0].namespace",
                    "cross-namespace backendRefs need a ReferenceGrant, which is not supported "
                    "yet; requests answer 500",
                )
            ],
        ),
        (
            (
                gateway(),
                {**backend("b"), "spec": {"endpoints": [{"address": "b.internal"}]}},
                http_route(rule()),
            ),
            [
                (
                    "warning",
                    "spec.rules[0].backendRefs[0].port",
                    "endpoint 'b.internal' has no port and the backendRef names none",
                )
            ],
        ),
        (
            (
                gateway(),
                {**backend("b"), "spec": {"endpoints": [{"address": "b.internal"}]}},
                http_route({"backendRefs": [{"name": "b", "port": 8080}]}),
            ),
            [],
        ),
        (
            (*OK, http_route(rule(), gateway_name="nope")),
            [
                (
                    "warning",
                    "spec.parentRefs[0]",
                    "not attached (NoMatchingParent): Gateway default/nope does not exist",
                )
            ],
        ),
        (
            (
                *OK,
                {
                    **http_route(rule()),
                    "spec": {
                        "parentRefs": [{"name": "gw", "kind": "Service", "group": ""}],
                        "rules": [rule()],
                    },
                },
            ),
            [
                (
                    "error",
                    "spec.parentRefs[0].kind",
                    "parent kind /Service is not supported (use a Gateway)",
                ),
                (
                    "warning",
                    "spec.parentRefs[0]",
                    "not attached (NoMatchingParent): parent kind /Service is not a Gateway",
                ),
            ],
        ),
    ],
)
def test_runtime_conditions_are_warnings(
    objects: tuple[dict[str, Any], ...], expected: list[tuple[str, str, str]]
) -> None:
    problems = check(*objects)

    assert [(p.severity, p.path, p.message) for p in problems] == expected
    for p in problems:
        tag = "warning: " if p.severity == "warning" else ""
        assert str(p).endswith(f"HTTPRoute default/r: {p.path}: {tag}{p.message}")


def test_warnings_do_not_block_a_revision_but_errors_do() -> None:
    resources, _ = parse_text(dump(gateway(), http_route(rule())), "m.yaml")
    config = validate_or_raise(resources, [])
    assert [r.kind for r in config.resources] == ["Gateway", "HTTPRoute"]

    bad = dump(gateway(listeners=[{"name": "a", "port": 1, "protocol": "UDP"}]))
    resources, _ = parse_text(bad, "m.yaml")
    with pytest.raises(ConfigError) as info:
        validate_or_raise(resources, [])
    line = bad.splitlines().index("    protocol: UDP") + 1
    assert str(info.value) == (
        f"m.yaml:{line}:5: Gateway default/gw: spec.listeners[0].protocol: "
        "listener protocol 'UDP' is not supported yet (supported: HTTP, HTTPS, TCP, TLS)"
    )


def test_unsupported_rule_features_are_errors() -> None:
    the_rule = rule(retry={"attempts": 11}, sessionPersistence={"type": "Cookie"})

    assert [(p.path, p.message) for p in check(*OK, http_route(the_rule))] == [
        ("spec.rules[0].retry.attempts", "at most 10 retries per request"),
        (
            "spec.rules[0].sessionPersistence",
            "session persistence on route rules is not supported yet; "
            "set sessionPersistence on the Backend",
        ),
    ]
    assert check(*OK, http_route(rule(retry={"attempts": 2, "codes": [503]}))) == []


def test_http2_backends_are_cleartext_only() -> None:
    assert check(backend("b", 1, appProtocol="h2c")) == []
    assert check(backend("b", 1, appProtocol="grpc")) == []
    problems = check(backend("b", 1, appProtocol="grpc", tls={"sni": "b.internal"}))
    assert [(p.severity, p.path) for p in problems] == [("error", "spec.tls")]


@pytest.mark.parametrize("value", ["/search?q", "/a b", "/[]", "/^", "/a%zz"])
def test_exact_and_prefix_values_use_the_gateway_api_character_set(value: str) -> None:
    assert path_match_problem("Exact", value) is not None
    assert path_match_problem("PathPrefix", value) is not None


def test_an_unsupported_minimum_tls_version_is_a_located_error() -> None:
    leaf = CertificateAuthority().issue("example.org")
    listener = {
        "name": "https",
        "port": 443,
        "protocol": "HTTPS",
        "tls": {
            "certificateRefs": [{"name": "cert"}],
            "options": {"turnout.dev/tls-min-version": "1.1"},
        },
    }
    problems = check(gateway(listeners=[listener]), leaf.secret("cert"), backend("b", 8080))
    assert [(p.severity, p.path) for p in problems] == [
        ("error", "spec.listeners[0].tls.options.turnout.dev/tls-min-version")
    ]
    assert "unsupported minimum TLS version '1.1'" in problems[0].message
