"""``proxy.explain``: the winner is the real router's, every other candidate says why not."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.configset import ConfigSet
from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.proxy.explain import ExplainError, ExplainRequest, explain
from turnout.testing.manifests import backend, dump, gateway, route, to


def _config(*objects: dict[str, Any]) -> ConfigSet:
    resources, problems = parse_text(dump(*objects), "m.yaml")
    config, more = validate(resources)
    assert not [p for p in problems + more if p.severity == "error"], problems + more
    return config


def _shop() -> ConfigSet:
    canary = {
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/api"},
                "headers": [{"name": "x-canary", "value": "1"}],
            }
        ],
        "backendRefs": [{"name": "items-v2", "weight": 90}, {"name": "items", "weight": 10}],
    }
    return _config(
        gateway("gw", 8080),
        backend("items", 9001, 9002),
        backend("items-v2", 9003),
        backend("web", 9004),
        route("api", [canary, to("items", "/api")], hostnames=["shop.example.com"]),
        route("site", [to("web", "/")], hostnames=["*.example.com"]),
    )


def _ask(config: ConfigSet, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return explain(config, 7, ExplainRequest("get", url, list((headers or {}).items())))


def test_header_match_wins_and_the_plain_rule_says_it_lost_on_precedence() -> None:
    out = _ask(_shop(), "http://shop.example.com:8080/api/items", {"X-Canary": "1"})
    assert out["route"] == {"name": "default/api", "rule": 0, "match": 0}
    chosen = [c for c in out["candidates"] if c["selected"]]
    assert [(c["route"], c["rule"]) for c in chosen] == [("default/api", 0)]
    plain = next(c for c in out["candidates"] if c["route"] == "default/api" and c["rule"] == 1)
    assert plain["reason"] == "matches too, but an earlier candidate wins by precedence"
    site = next(c for c in out["candidates"] if c["route"] == "default/site")
    assert "more specific hostname wins" in site["reason"]
    shares = {b["backend"]: (b["weight"], b["share"]) for b in out["backends"]}
    assert shares == {"default/items-v2": (90, 0.9), "default/items": (10, 0.1)}
    v2 = out["backends"][0]
    assert [e["address"] for e in v2["endpoints"]] == ["127.0.0.1:9003"]
    assert out["revision"] == 7
    assert out["verdict"] == "route default/api → default/items-v2 90%, default/items 10%"


def test_without_the_header_the_canary_rule_names_the_missing_header() -> None:
    out = _ask(_shop(), "http://shop.example.com:8080/api/items")
    assert out["route"]["rule"] == 1
    canary = next(c for c in out["candidates"] if c["rule"] == 0 and c["route"] == "default/api")
    assert canary["reason"] == "header x-canary is absent"
    assert canary["match"]["headers"] == [{"name": "x-canary", "type": "Exact", "value": "1"}]
    wrong = _ask(_shop(), "http://shop.example.com:8080/api/items", {"x-canary": "2"})
    canary = next(c for c in wrong["candidates"] if c["rule"] == 0 and c["route"] == "default/api")
    assert canary["reason"] == "header x-canary is '2', not '1'"


def test_other_host_falls_to_the_wildcard_route() -> None:
    out = _ask(_shop(), "http://www.example.com:8080/api/items")
    assert out["route"]["name"] == "default/site"
    api = [c for c in out["candidates"] if c["route"] == "default/api"]
    assert api and all(
        c["reason"] == "hostname shop.example.com does not match www.example.com" for c in api
    )


def test_no_route_and_no_listener_are_verdicts_not_errors() -> None:
    config = _config(gateway("gw", 8080), backend("b", 9001), route("r", [to("b", "/only")]))
    out = _ask(config, "http://x.test:8080/elsewhere")
    assert "route" not in out
    assert out["verdict"] == "no route matches this request: 404"
    assert out["candidates"][0]["reason"] == "path /elsewhere is not under the prefix /only"
    out = _ask(config, "http://x.test:9999/")
    assert out["verdict"] == "no HTTP listener on port 9999 (ports served: [8080])"


def test_path_is_normalised_as_the_data_plane_does() -> None:
    config = _config(gateway("gw", 8080), backend("b", 9001), route("r", [to("b", "/a")]))
    out = _ask(config, "http://x.test:8080/x/../a/./b")
    assert out["request"]["path"] == "/a/b"
    assert out["route"]["name"] == "default/r"


@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("GET", "shop.example.com/api", "url"),
        ("G E T", "http://x/", "method"),
        ("GET", "ftp://x/", "url"),
        ("GET", "http://x:notaport/", "url"),
        ("GET", "http://[::1/", "url"),
        ("GET", "http://x/%zz", "url"),
    ],
)
def test_bad_requests_name_the_field(method: str, url: str, field: str) -> None:
    with pytest.raises(ExplainError, match=f"^{field}:"):
        explain(_shop(), 1, ExplainRequest(method, url))


def test_bad_header_name_is_refused() -> None:
    with pytest.raises(ExplainError, match=r"^headers:"):
        explain(_shop(), 1, ExplainRequest("GET", "http://x/", [("bad name", "v")]))
