"""Compiled route lookup: Gateway API match semantics and precedence, host indexes."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.model.routes import HTTPRouteMatch
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.routing.build import (
    MatchEntry,
    build_host_index,
    build_vhost,
    compile_match,
    normalize_prefix,
)
from turnout.proxy.routing.table import HostIndex, VirtualHost, parse_query

# A candidate is (name, match spec, precedence); precedence is (age, "ns/name", rule, match)
# as the snapshot builder makes it.
Cand = tuple[str, dict[str, Any], tuple[object, ...]]


def table(*cands: Cand) -> VirtualHost[str]:
    entries: list[MatchEntry[str]] = [
        compile_match(HTTPRouteMatch.model_validate(spec), name, prec) for name, spec, prec in cands
    ]
    return build_vhost(entries)


def request(
    path: str,
    method: str = "GET",
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
) -> RequestHead:
    return RequestHead(
        method.encode(),
        path.encode(),
        query.encode(),
        [(n.encode(), v.encode()) for n, v in headers or []],
        b"a",
        "a",
    )


def winner(vhost: VirtualHost[str], head: RequestHead) -> str | None:
    cand = vhost.match(head)
    return None if cand is None else cand.action


def prefix(value: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": value}}


def exact(value: str) -> dict[str, Any]:
    return {"path": {"type": "Exact", "value": value}}


def regex(value: str) -> dict[str, Any]:
    return {"path": {"type": "RegularExpression", "value": value}}


def p(age: int = 0, name: str = "default/r", rule: int = 0, match: int = 0) -> tuple[object, ...]:
    return (age, name, rule, match)


# -- path semantics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "matches"),
    [
        ("/foo", "/foo", True),
        ("/foo", "/foo/", True),
        ("/foo", "/foo/bar", True),
        ("/foo", "/foo/bar/baz/", True),
        ("/foo", "/foobar", False),
        ("/foo", "/fo", False),
        ("/foo", "/", False),
        ("/foo/", "/foo", True),  # a trailing slash on the prefix is ignored
        ("/foo/", "/foo/bar", True),
        ("/foo/", "/foobar", False),
        ("/foo/bar", "/foo/bar/x", True),
        ("/foo/bar", "/foo/baz", False),
        ("/foo/bar", "/foo", False),
        ("/", "/", True),
        ("/", "/anything/at/all", True),
    ],
)
def test_path_prefix_matches_whole_segments(value: str, path: str, matches: bool) -> None:
    vhost = table(("r", prefix(value), p()))

    assert (winner(vhost, request(path)) == "r") is matches


def test_single_root_fast_path_still_honours_predicates() -> None:
    vhost = table(("r", {"path": {"type": "PathPrefix", "value": "/"}, "method": "POST"}, p()))

    assert winner(vhost, request("/x", "POST")) == "r"
    assert winner(vhost, request("/x", "GET")) is None


@pytest.mark.parametrize(
    ("value", "path", "matches"),
    [
        ("/foo", "/foo", True),
        ("/foo", "/foo/", False),
        ("/foo", "/foo/bar", False),
        ("/foo/", "/foo/", True),
        ("/foo/", "/foo", False),
    ],
)
def test_exact_paths(value: str, path: str, matches: bool) -> None:
    vhost = table(("r", exact(value), p()))

    assert (winner(vhost, request(path)) == "r") is matches


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/api/v[0-9]+/.*", "/api/v2/users", True),
        ("/api/v[0-9]+/.*", "/api/vx/users", False),
        ("/api", "/api/v1", False),  # full match, not search
        ("/api", "/x/api", False),
        (".*/edit", "/doc/1/edit", True),
        ("/(a|b)", "/ab", False),
    ],
)
def test_regular_expressions_must_match_the_whole_path(
    pattern: str, path: str, matches: bool
) -> None:
    vhost = table(("r", regex(pattern), p()))

    assert (winner(vhost, request(path)) == "r") is matches


@pytest.mark.parametrize(
    ("value", "expected"),
    [("/", b"/"), ("/foo", b"/foo"), ("/foo/", b"/foo"), ("/foo/bar/", b"/foo/bar")],
)
def test_normalize_prefix(value: str, expected: bytes) -> None:
    assert normalize_prefix(value) == expected


def test_the_matched_prefix_is_kept_for_rewrites() -> None:
    vhost = table(("p", prefix("/api/"), p()), ("e", exact("/x"), p(1)))

    cand = vhost.match(request("/api/users"))
    assert cand is not None
    assert cand.prefix == b"/api"
    other = vhost.match(request("/x"))
    assert other is not None
    assert other.prefix is None


# -- header, query and method predicates -----------------------------------------------------


def test_header_names_match_case_insensitively_values_exactly() -> None:
    vhost = table(("r", {"headers": [{"name": "X-Env", "value": "Canary"}]}, p()))

    assert winner(vhost, request("/", headers=[("x-env", "Canary")])) == "r"
    assert winner(vhost, request("/", headers=[("x-env", "canary")])) is None
    assert winner(vhost, request("/", headers=[("x-other", "Canary")])) is None
    assert winner(vhost, request("/")) is None


def test_header_regex_is_a_full_match() -> None:
    vhost = table(
        ("r", {"headers": [{"type": "RegularExpression", "name": "x-v", "value": "v[12]"}]}, p())
    )

    assert winner(vhost, request("/", headers=[("x-v", "v1")])) == "r"
    assert winner(vhost, request("/", headers=[("x-v", "v12")])) is None
    assert winner(vhost, request("/", headers=[("x-v", "xv1")])) is None


def test_all_header_matches_must_hold() -> None:
    vhost = table(
        ("r", {"headers": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}, p())
    )

    assert winner(vhost, request("/", headers=[("a", "1"), ("b", "2")])) == "r"
    assert winner(vhost, request("/", headers=[("a", "1")])) is None
    assert winner(vhost, request("/", headers=[("a", "1"), ("b", "3")])) is None


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("env=canary", True),
        ("x=1&env=canary", True),
        ("env=canary&env=stable", True),  # the first value counts
        ("env=stable&env=canary", False),
        ("env=Canary", False),
        ("ENV=canary", False),  # names are case-sensitive
        ("env=can%61ry", True),  # percent-decoded
        ("", False),
        ("env", False),
    ],
)
def test_query_parameter_matching(query: str, matches: bool) -> None:
    vhost = table(("r", {"queryParams": [{"name": "env", "value": "canary"}]}, p()))

    assert (winner(vhost, request("/", query=query)) == "r") is matches


def test_query_regex_is_a_full_match() -> None:
    vhost = table(
        (
            "r",
            {"queryParams": [{"type": "RegularExpression", "name": "id", "value": "[0-9]+"}]},
            p(),
        )
    )

    assert winner(vhost, request("/", query="id=42")) == "r"
    assert winner(vhost, request("/", query="id=42a")) is None


def test_parse_query_keeps_the_first_value_and_blank_values() -> None:
    assert parse_query(b"a=1&b=&a=2&c=x%20y+z") == {"a": "1", "b": "", "c": "x y z"}


def test_method_match() -> None:
    vhost = table(("r", {"method": "DELETE"}, p()), ("fallback", prefix("/"), p(1)))

    assert winner(vhost, request("/", "DELETE")) == "r"
    assert winner(vhost, request("/", "GET")) == "fallback"


# -- precedence --------------------------------------------------------------------------------

PRECEDENCE_CASES = [
    (
        "exact beats regex and prefix",
        [
            ("prefix", prefix("/a/b"), p(0)),
            ("regex", regex("/a/.*"), p(1)),
            ("exact", exact("/a/b"), p(2)),
        ],
        request("/a/b"),
        "exact",
    ),
    (
        "regex beats prefix",
        [("prefix", prefix("/a/b"), p(0)), ("regex", regex("/a/.*"), p(1))],
        request("/a/b"),
        "regex",
    ),
    (
        "longest prefix wins",
        [("short", prefix("/a"), p(0)), ("long", prefix("/a/b"), p(1)), ("root", prefix("/"), p())],
        request("/a/b/c"),
        "long",
    ),
    (
        "longest prefix beats method",
        [("method", {**prefix("/a"), "method": "GET"}, p(0)), ("long", prefix("/a/b"), p(1))],
        request("/a/b"),
        "long",
    ),
    (
        "method beats headers",
        [
            ("headers", {"headers": [{"name": "x", "value": "1"}]}, p(0)),
            ("method", {"method": "GET"}, p(1)),
        ],
        request("/", headers=[("x", "1")]),
        "method",
    ),
    (
        "more headers win",
        [
            ("one", {"headers": [{"name": "x", "value": "1"}]}, p(0)),
            (
                "two",
                {"headers": [{"name": "x", "value": "1"}, {"name": "y", "value": "2"}]},
                p(1),
            ),
        ],
        request("/", headers=[("x", "1"), ("y", "2")]),
        "two",
    ),
    (
        "headers beat query params",
        [
            ("query", {"queryParams": [{"name": "q", "value": "1"}]}, p(0)),
            ("header", {"headers": [{"name": "x", "value": "1"}]}, p(1)),
        ],
        request("/", query="q=1", headers=[("x", "1")]),
        "header",
    ),
    (
        "more query params win",
        [
            ("one", {"queryParams": [{"name": "a", "value": "1"}]}, p(0)),
            (
                "two",
                {"queryParams": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]},
                p(1),
            ),
        ],
        request("/", query="a=1&b=2"),
        "two",
    ),
    (
        "older route wins",
        [("newer", prefix("/"), p(1, "default/a")), ("older", prefix("/"), p(0, "default/z"))],
        request("/x"),
        "older",
    ),
    (
        "then route name",
        [("z", prefix("/"), p(0, "default/z")), ("a", prefix("/"), p(0, "default/a"))],
        request("/x"),
        "a",
    ),
    (
        "then namespace/name as a whole",
        [("b/a", prefix("/"), p(0, "b/a")), ("a/z", prefix("/"), p(0, "a/z"))],
        request("/x"),
        "a/z",
    ),
    (
        "then rule order",
        [("rule1", prefix("/"), p(rule=1)), ("rule0", prefix("/"), p(rule=0))],
        request("/x"),
        "rule0",
    ),
    (
        "then match order",
        [("m1", prefix("/"), p(match=1)), ("m0", prefix("/"), p(match=0))],
        request("/x"),
        "m0",
    ),
    (
        "a failing exact falls through to a prefix",
        [("exact", {**exact("/a"), "method": "POST"}, p(0)), ("prefix", prefix("/a"), p(1))],
        request("/a"),
        "prefix",
    ),
    (
        "a failing long prefix falls back to a shorter one",
        [
            ("long", {**prefix("/a/b"), "headers": [{"name": "x", "value": "1"}]}, p(0)),
            ("short", prefix("/a"), p(1)),
        ],
        request("/a/b/c"),
        "short",
    ),
    (
        "longer regex first",
        [("short", regex("/a.*"), p(0)), ("long", regex("/a/b.*"), p(1))],
        request("/a/b/c"),
        "long",
    ),
    (
        "no match",
        [("a", prefix("/a"), p(0)), ("b", exact("/b"), p(1))],
        request("/c"),
        None,
    ),
]


@pytest.mark.parametrize(
    ("cands", "head", "expected"),
    [c[1:] for c in PRECEDENCE_CASES],
    ids=[c[0] for c in PRECEDENCE_CASES],
)
def test_precedence(cands: list[Cand], head: RequestHead, expected: str | None) -> None:
    assert winner(table(*cands), head) == expected
    assert winner(table(*reversed(cands)), head) == expected  # declaration order is irrelevant


# -- host indexes ------------------------------------------------------------------------------


def hosts() -> HostIndex[str]:
    return build_host_index(
        {
            "shop.example.com": "exact",
            "*.example.com": "wild",
            "*.eu.example.com": "wild-eu",
            "*.com": "wild-com",
            None: "default",
        }
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("shop.example.com", "exact"),
        ("api.example.com", "wild"),
        ("a.b.example.com", "wild"),
        ("api.eu.example.com", "wild-eu"),  # the longest wildcard wins
        ("eu.example.com", "wild"),
        ("example.com", "wild-com"),  # '*.example.com' needs one more label
        ("com", "default"),
        ("example.org", "default"),
        ("", "default"),
    ],
)
def test_host_index(host: str, expected: str) -> None:
    assert hosts().lookup(host) == expected


def test_host_index_without_default() -> None:
    index = build_host_index({"*.example.com": "wild"})

    assert index.lookup("example.com") is None
    assert index.lookup("x.example.com") == "wild"
