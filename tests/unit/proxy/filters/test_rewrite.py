"""``URLRewrite`` path modifiers (Gateway API spec table and conformance cases)."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.model.routes import HTTPPathModifier, HTTPURLRewriteFilter
from turnout.proxy.filters.rewrite import PathRewriter, UrlRewrite, replace_prefix
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.routing.build import normalize_prefix


@pytest.mark.parametrize(
    ("path", "matched", "replacement", "expected"),
    [
        # conformance: httproute-rewrite-path
        ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
        ("/prefix/one", "/prefix/one", "/one", "/one"),
        ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
        ("/strip-prefix", "/strip-prefix", "/", "/"),
        # the HTTPPathModifier table of the Gateway API reference
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        # a root prefix keeps the whole path under the replacement
        ("/a/b", "/", "/v2", "/v2/a/b"),
        ("/a/b", "/", "/", "/a/b"),
    ],
)
def test_replace_prefix(path: str, matched: str, replacement: str, expected: str) -> None:
    # The router hands over the prefix as compiled ('/foo/' is '/foo').
    got = replace_prefix(path.encode(), normalize_prefix(matched), replacement.encode())

    assert got == expected.encode()


def rewriter(**spec: Any) -> PathRewriter:
    return PathRewriter(HTTPPathModifier.model_validate(spec))


def test_replace_full_path_ignores_the_match() -> None:
    mod = rewriter(type="ReplaceFullPath", replaceFullPath="/one")

    assert mod.rewrite(b"/full/one/two", b"/full") == b"/one"
    assert mod.rewrite(b"/x", None) == b"/one"


def test_replace_prefix_without_a_matched_prefix_keeps_the_path() -> None:
    mod = rewriter(type="ReplacePrefixMatch", replacePrefixMatch="/new")

    assert mod.rewrite(b"/exact/path", None) == b"/exact/path"
    assert mod.rewrite(b"/old/x", b"/old") == b"/new/x"


def test_url_rewrite_changes_authority_and_path_and_keeps_the_query() -> None:
    head = RequestHead(b"GET", b"/api/v1/users", b"page=2", [], b"shop.example.com", "shop")
    flt = UrlRewrite(
        HTTPURLRewriteFilter.model_validate(
            {
                "hostname": "users.internal",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1"},
            }
        )
    )

    flt.apply(head, b"/api/v1")

    assert head.authority == b"users.internal"
    assert head.path == b"/v1/users"
    assert head.target == b"/v1/users?page=2"
    assert head.host == "shop"  # routing identity is unchanged


def test_url_rewrite_of_the_hostname_only() -> None:
    head = RequestHead(b"GET", b"/x", b"", [], b"a", "a")

    UrlRewrite(HTTPURLRewriteFilter.model_validate({"hostname": "b.example.com"})).apply(head, None)

    assert (head.authority, head.path) == (b"b.example.com", b"/x")
