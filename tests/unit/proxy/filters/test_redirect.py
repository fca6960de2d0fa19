"""``RequestRedirect``: the Location the Gateway API prescribes."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.model.routes import HTTPRequestRedirectFilter
from turnout.proxy.filters.redirect import Redirect
from turnout.proxy.protocols.heads import RequestHead


def location(
    spec: dict[str, Any],
    *,
    path: str = "/a/b",
    query: str = "",
    host: str = "shop.example.com",
    scheme: bytes = b"http",
    listener_port: int = 8080,
    matched: bytes | None = None,
) -> str:
    head = RequestHead(b"GET", path.encode(), query.encode(), [], host.encode(), host)
    redirect = Redirect(HTTPRequestRedirectFilter.model_validate(spec))
    return redirect.location(head, scheme, listener_port, matched).decode()


@pytest.mark.parametrize(
    ("spec", "listener_port", "expected"),
    [
        # no scheme, no port: the listener's port
        ({}, 8080, "http://shop.example.com:8080/a/b"),
        ({}, 80, "http://shop.example.com/a/b"),  # default port left out
        # a scheme without a port: that scheme's well-known port
        ({"scheme": "https"}, 8080, "https://shop.example.com/a/b"),
        ({"scheme": "http"}, 8443, "http://shop.example.com/a/b"),
        # an explicit port always wins; only a scheme's default port is omitted
        ({"port": 8443}, 80, "http://shop.example.com:8443/a/b"),
        ({"port": 80}, 8080, "http://shop.example.com/a/b"),
        ({"scheme": "https", "port": 443}, 80, "https://shop.example.com/a/b"),
        ({"scheme": "https", "port": 8443}, 80, "https://shop.example.com:8443/a/b"),
        ({"scheme": "http", "port": 443}, 80, "http://shop.example.com:443/a/b"),
        ({"scheme": "https", "port": 80}, 80, "https://shop.example.com:80/a/b"),
        # hostname
        ({"hostname": "www.example.com"}, 80, "http://www.example.com/a/b"),
        (
            {"hostname": "www.example.com", "scheme": "https"},
            8080,
            "https://www.example.com/a/b",
        ),
    ],
)
def test_location_defaults(spec: dict[str, Any], listener_port: int, expected: str) -> None:
    assert location(spec, listener_port=listener_port) == expected


def test_the_request_scheme_is_the_default() -> None:
    assert location({}, scheme=b"https", listener_port=443) == "https://shop.example.com/a/b"
    assert location({}, scheme=b"https", listener_port=80) == "https://shop.example.com:80/a/b"


def test_the_query_string_is_kept() -> None:
    assert location({"scheme": "https"}, query="a=1&b=2") == "https://shop.example.com/a/b?a=1&b=2"


def test_ipv6_hosts_keep_their_brackets() -> None:
    assert location({}, host="[::1]") == "http://[::1]:8080/a/b"


@pytest.mark.parametrize(
    ("path_mod", "path", "matched", "expected"),
    [
        ({"type": "ReplaceFullPath", "replaceFullPath": "/new"}, "/old/x", None, "/new"),
        (
            {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
            "/old/x",
            b"/old",
            "/new/x",
        ),
        ({"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}, "/old", b"/old", "/"),
    ],
)
def test_path_modifiers(
    path_mod: dict[str, str], path: str, matched: bytes | None, expected: str
) -> None:
    got = location({"path": path_mod}, path=path, listener_port=80, matched=matched)

    assert got == "http://shop.example.com" + expected


def test_status_code() -> None:
    assert Redirect(HTTPRequestRedirectFilter.model_validate({})).status == 302
    assert Redirect(HTTPRequestRedirectFilter.model_validate({"statusCode": 301})).status == 301
