"""The compiled router agrees with a naive reference matcher written from the spec text.

The reference below follows the Gateway API ``HTTPRouteRule.matches`` documentation
literally: every match of every rule is a candidate; a candidate applies when its path,
method, headers and query parameters all hold; among applicable candidates precedence
goes to, continuing on ties,

1. an ``Exact`` path match,
2. (Turnout's documented choice for the implementation-specific case) a
   ``RegularExpression`` path match, the longer pattern first,
3. the ``PathPrefix`` match with the most characters (``/foo/`` counts as ``/foo``),
4. a method match,
5. the largest number of header matches,
6. the largest number of query param matches,
7. the oldest route, then ``{namespace}/{name}`` alphabetically,
8. the first rule in list order (and, within it, the first match).

``PathPrefix`` matches element-wise: ``/foo`` matches ``/foo``, ``/foo/`` and
``/foo/bar`` but not ``/foobar``. Header names compare case-insensitively; header and
query values exactly or as a full regular-expression match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.config.hostnames import hostname_matches, is_wildcard
from turnout.config.model.routes import HTTPRouteMatch
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.routing.build import build_host_index, build_vhost, compile_match

# Small alphabets on purpose: several candidates must often apply to the same request,
# or precedence is never exercised. 'ab' shares a first character with 'a' ('/a' must
# not match '/ab').
SEGMENTS = ["a", "b", "ab"]
VALUES = ["v", "V", "w"]  # header and query values compare case-sensitively
VALUE_REGEXES = ["[vw]", "v|V", "w.*", "[a-z]+", "vv?"]
PATH_REGEXES = ["/a.*", "/(a|b)/.*", "/[ab/]+", ".*", "/a(/.*)?", "/a/b/?", "/.*/b", "/ab?"]
METHODS = ["GET", "GET", "POST", "PUT"]


def _all_paths(depth: int) -> list[str]:
    out = ["/"]
    level = [""]
    for _ in range(depth):
        level = [f"{base}/{seg}" for base in level for seg in SEGMENTS]
        out += level + [p + "/" for p in level]
    return out


paths = st.sampled_from(_all_paths(3))
shallow_paths = st.sampled_from(_all_paths(2))  # prefixes and exact paths hit more often


def _value_options(names: list[str]) -> list[dict[str, str]]:
    return [{"type": "Exact", "name": n, "value": v} for n in names for v in VALUES] + [
        {"type": "RegularExpression", "name": n, "value": v} for n in names for v in VALUE_REGEXES
    ]


def value_matches(names: list[str]) -> st.SearchStrategy[list[dict[str, str]]]:
    """Zero (most often), one or two matches with distinct case-insensitive names."""
    singles = _value_options(names)
    pairs = [
        [m1, m2] for m1 in singles for m2 in singles if m1["name"].lower() != m2["name"].lower()
    ]
    return st.one_of(
        st.just([]),
        st.just([]),
        st.sampled_from(singles).map(lambda m: [m]),
        st.sampled_from(pairs),
    )


regex_specs = st.sampled_from(PATH_REGEXES).map(lambda v: {"type": "RegularExpression", "value": v})
path_specs = st.one_of(
    st.none(),
    shallow_paths.map(lambda v: {"type": "Exact", "value": v}),
    shallow_paths.map(lambda v: {"type": "PathPrefix", "value": v}),
    regex_specs,
    regex_specs,  # twice: several regexes must often apply at once
)


def _match(
    path: dict[str, str] | None,
    method: str | None,
    headers: list[dict[str, str]],
    query: list[dict[str, str]],
) -> dict[str, Any]:
    spec: dict[str, Any] = {"headers": headers, "queryParams": query}
    if path is not None:
        spec["path"] = path
    if method is not None:
        spec["method"] = method
    return spec


matches = st.builds(
    _match,
    path_specs,
    st.sampled_from([None, None, "GET", "POST"]),
    value_matches(["X-A", "x-a", "x-B"]),
    value_matches(["q", "r"]),
)


@dataclass(frozen=True)
class Route:
    age: int
    name: str  # "namespace/name"
    rules: list[list[dict[str, Any]]]  # rule -> its matches


ROUTE_NAMES = ["default/a", "default/b", "other/a", "x/y"]
_route_bodies = st.lists(
    st.tuples(
        st.integers(0, 2),  # ties on age are broken by name
        st.lists(st.lists(matches, min_size=1, max_size=2), min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=3,
)
routes = st.builds(
    lambda names, bodies: [
        Route(age, n, rules) for n, (age, rules) in zip(names, bodies, strict=False)
    ],
    st.permutations(ROUTE_NAMES),
    _route_bodies,
)

MAYBE_VALUE = st.sampled_from([None, "v", "v", "V", "w"])


def _request(
    method: str,
    path: str,
    header_values: tuple[str | None, ...],
    query_values: tuple[str | None, ...],
) -> RequestHead:
    headers = [
        (name, value.encode())
        for name, value in zip((b"x-a", b"x-b", b"x-c"), header_values, strict=True)
        if value is not None
    ]
    query = "&".join(
        f"{name}={value}"
        for name, value in zip("qrs", query_values, strict=True)
        if value is not None
    )
    return RequestHead(
        method.encode(), path.encode(), query.encode(), headers, b"example.com", "example.com"
    )


requests = st.builds(
    _request,
    st.sampled_from(METHODS),
    st.one_of(shallow_paths, shallow_paths, paths),
    st.tuples(MAYBE_VALUE, MAYBE_VALUE, MAYBE_VALUE),
    st.tuples(MAYBE_VALUE, MAYBE_VALUE, MAYBE_VALUE),
)


# -- the reference ----------------------------------------------------------------------------


def _path_rank(spec: dict[str, Any], path: str) -> tuple[int, int] | None:
    """None if the path does not match, else a sort key (lower is better)."""
    path_spec = spec.get("path", {"type": "PathPrefix", "value": "/"})
    kind, value = path_spec["type"], path_spec["value"]
    if kind == "Exact":
        return (0, 0) if path == value else None
    if kind == "RegularExpression":
        return (1, -len(value)) if re.fullmatch(value, path) else None
    pfx = value.rstrip("/") or "/"
    ok = pfx == "/" or path == pfx or path.startswith(pfx + "/")
    return (2, -len(pfx)) if ok else None


def _value_ok(m: dict[str, str], actual: str | None) -> bool:
    if actual is None:
        return False
    if m["type"] == "Exact":
        return actual == m["value"]
    return re.fullmatch(m["value"], actual) is not None


def reference(all_routes: list[Route], head: RequestHead) -> tuple[str, int, int] | None:
    path = head.path.decode()
    req_headers = {n.decode(): v.decode() for n, v in head.headers}
    req_query = dict(kv.split("=", 1) for kv in head.query.decode().split("&") if kv)
    best: tuple[object, ...] | None = None
    chosen = None
    for route in all_routes:
        for r, rule in enumerate(route.rules):
            for m, spec in enumerate(rule):
                rank = _path_rank(spec, path)
                if rank is None:
                    continue
                if spec.get("method") and spec["method"] != head.method.decode():
                    continue
                if not all(
                    _value_ok(h, req_headers.get(h["name"].lower())) for h in spec["headers"]
                ):
                    continue
                if not all(_value_ok(q, req_query.get(q["name"])) for q in spec["queryParams"]):
                    continue
                key = (
                    *rank,
                    0 if spec.get("method") else 1,
                    -len(spec["headers"]),
                    -len(spec["queryParams"]),
                    route.age,
                    route.name,
                    r,
                    m,
                )
                if best is None or key < best:
                    best, chosen = key, (route.name, r, m)
    return chosen


def compiled(all_routes: list[Route], order: list[int]) -> Any:
    entries = []
    for route in all_routes:
        for r, rule in enumerate(route.rules):
            for m, spec in enumerate(rule):
                entries.append(
                    compile_match(
                        HTTPRouteMatch.model_validate(spec),
                        (route.name, r, m),
                        (route.age, route.name, r, m),
                    )
                )
    return build_vhost([entries[i] for i in order if i < len(entries)])


@settings(max_examples=500, deadline=None)
@given(routes, st.lists(requests, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_compiled_router_agrees_with_the_reference(
    all_routes: list[Route], heads: list[RequestHead], rnd: Any
) -> None:
    count = sum(len(rule) for route in all_routes for rule in route.rules)
    order = list(range(count))
    rnd.shuffle(order)  # declaration order must not matter
    vhost = compiled(all_routes, order)

    for head in heads:
        cand = vhost.match(head)
        got = None if cand is None else cand.action
        assert got == reference(all_routes, head), head


# -- host index --------------------------------------------------------------------------------

LABELS = ["a", "b", "ex"]
names = st.lists(st.sampled_from(LABELS), min_size=1, max_size=3).map(".".join)
patterns = st.one_of(names, names.map(lambda n: "*." + n))


def reference_host(table: dict[str | None, str], host: str) -> str | None:
    if host in table:
        return table[host]
    wild = [p for p in table if p is not None and is_wildcard(p) and hostname_matches(p, host)]
    if wild:
        return table[max(wild, key=len)]
    return table.get(None)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(patterns, max_size=6, unique=True),
    st.booleans(),
    st.lists(names, min_size=1, max_size=5),
)
def test_host_index_agrees_with_the_reference(
    pats: list[str], with_default: bool, hosts: list[str]
) -> None:
    table: dict[str | None, str] = {p: f"v:{p}" for p in pats}
    if with_default:
        table[None] = "default"
    index = build_host_index(table)

    for host in hosts:
        assert index.lookup(host) == reference_host(table, host)
