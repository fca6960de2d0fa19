"""``RequestHeaderModifier`` / ``ResponseHeaderModifier``: set, add, remove, and Host."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.model.routes import HTTPHeaderFilter
from turnout.proxy.filters.headers import HeaderModifier
from turnout.proxy.protocols.heads import Headers, RequestHead


def modifier(**spec: Any) -> HeaderModifier:
    return HeaderModifier(HTTPHeaderFilter.model_validate(spec))


def h(*pairs: tuple[str, str]) -> Headers:
    return [(n.encode(), v.encode()) for n, v in pairs]


@pytest.mark.parametrize(
    ("spec", "before", "after"),
    [
        (
            {"set": [{"name": "X-Env", "value": "prod"}]},
            h(("x-env", "dev"), ("accept", "*/*"), ("x-env", "test")),
            h(("accept", "*/*"), ("x-env", "prod")),
        ),
        (
            {"set": [{"name": "X-Env", "value": "prod"}]},
            h(("accept", "*/*")),
            h(("accept", "*/*"), ("x-env", "prod")),
        ),
        (
            {"add": [{"name": "X-Tag", "value": "b"}]},
            h(("x-tag", "a")),
            h(("x-tag", "a"), ("x-tag", "b")),
        ),
        (
            {"remove": ["X-Debug", "Cookie"]},
            h(("x-debug", "1"), ("cookie", "a"), ("x-debug", "2"), ("accept", "*/*")),
            h(("accept", "*/*")),
        ),
        (
            {
                "set": [{"name": "A", "value": "1"}],
                "add": [{"name": "B", "value": "2"}],
                "remove": ["C"],
            },
            h(("a", "0"), ("b", "1"), ("c", "x"), ("d", "y")),
            h(("b", "1"), ("d", "y"), ("a", "1"), ("b", "2")),
        ),
        ({}, h(("a", "1")), h(("a", "1"))),
    ],
)
def test_set_add_remove(spec: dict[str, Any], before: Headers, after: Headers) -> None:
    assert modifier(**spec).apply(before) == after


def test_names_compare_case_insensitively_and_are_emitted_lowercase() -> None:
    mod = modifier(set=[{"name": "X-MiXeD", "value": "v"}], remove=["ACCEPT"])

    assert mod.apply(h(("x-mixed", "old"), ("accept", "*/*"))) == h(("x-mixed", "v"))


def test_setting_host_changes_the_upstream_authority() -> None:
    head = RequestHead(b"GET", b"/", b"", h(("accept", "*/*")), b"shop.example.com", "shop")
    mod = modifier(set=[{"name": "Host", "value": "internal.svc:8080"}])

    mod.apply_request(head)

    assert head.authority == b"internal.svc:8080"
    assert head.original_authority == b"shop.example.com"
    assert head.headers == h(("accept", "*/*"))  # Host never enters the header list


def test_adding_host_sets_it_when_not_set_too() -> None:
    head = RequestHead(b"GET", b"/", b"", [], b"a", "a")

    modifier(add=[{"name": "host", "value": "b"}]).apply_request(head)
    assert head.authority == b"b"

    head = RequestHead(b"GET", b"/", b"", [], b"a", "a")
    modifier(
        set=[{"name": "Host", "value": "set"}], add=[{"name": "Host", "value": "added"}]
    ).apply_request(head)
    assert head.authority == b"set"


def test_without_host_the_authority_is_kept() -> None:
    head = RequestHead(b"GET", b"/", b"", h(("x", "1")), b"a:81", "a")

    modifier(add=[{"name": "y", "value": "2"}]).apply_request(head)

    assert head.authority == b"a:81"
    assert head.headers == h(("x", "1"), ("y", "2"))
