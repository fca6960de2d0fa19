"""The built-in ``transform`` plugin through the harness: header set/add/remove/rename
with templates, query mapping, regex path rewrite, method override, response headers,
and its configuration errors."""

from __future__ import annotations

import asyncio

import pytest

from turnout.proxy.filters.auth.chain import Principal
from turnout.proxy.filters.transform import TransformPlugin
from turnout.testing.plugins import PluginConfigError, PluginHarness


def test_request_and_response_transforms() -> None:
    config = {
        "request": {
            "method": "POST",
            "path": {"pattern": "^/v1/(.*)$", "substitution": "/api/\\1"},
            "query": {
                "set": {"version": "2", "who": "{header.x-user}"},
                "remove": ["debug"],
                "rename": {"q": "search"},
            },
            "headers": {
                "set": {
                    "x-forwarded-user": "{header.x-user}@{host} via {route}",
                    "x-plan": "{claim.plan}/{consumer}",
                    "x-braces": "{{literal}}",
                },
                "add": {"x-hop": "{method} {path}?{query.q}"},
                "remove": ["x-internal"],
                "rename": {"x-old": "x-new"},
            },
        },
        "response": {
            "headers": {
                "set": {"x-status": "{status}"},
                "remove": ["server"],
                "rename": {"x-upstream-id": "x-id"},
            }
        },
    }

    async def main() -> None:
        async with PluginHarness(TransformPlugin, config, route="shop/api") as h:
            out = await h.request(
                "GET",
                "/v1/orders/7",
                query="q=shoes&debug=1&page=2",
                authority="shop.example",
                headers={
                    "x-user": "ann",
                    "x-internal": "secret",
                    "x-old": "o",
                    "x-forwarded-user": "forged",
                },
                principal=Principal("mobile", claims={"plan": "gold"}),
            )
            head = out.head
            assert out.forwarded
            assert (head.method, head.path) == (b"POST", b"/api/orders/7")
            assert head.query == b"search=shoes&page=2&version=2&who=ann"
            headers = dict(head.headers)
            assert headers[b"x-forwarded-user"] == b"ann@shop.example via shop/api"
            assert headers[b"x-plan"] == b"gold/mobile"
            assert headers[b"x-braces"] == b"{literal}"
            assert headers[b"x-hop"] == b"GET /v1/orders/7?shoes"  # templates read the original
            assert headers[b"x-new"] == b"o"
            assert b"x-internal" not in headers and b"x-old" not in headers
            assert [v for n, v in head.headers if n == b"x-forwarded-user"] == [
                b"ann@shop.example via shop/api"
            ]
            resp = h.response(out, 201, {"server": "x", "x-upstream-id": "9"})
            assert resp.header("x-status") == "201" and resp.header("server") is None
            assert resp.header("x-id") == "9"

    asyncio.run(main())


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"request": {"headers": {"set": {"x": "{nope}"}}}}, ("request", "headers", "set", "x")),
        ({"request": {"headers": {"set": {"x": "{header}"}}}}, ("request", "headers", "set", "x")),
        ({"request": {"headers": {"set": {"x": "a{b"}}}}, ("request", "headers", "set", "x")),
        (
            {"request": {"path": {"pattern": "(", "substitution": ""}}},
            ("request", "path", "pattern"),
        ),
        ({"request": {"method": "FETCH"}}, ("request", "method")),
        ({"request": {"headers": {"remove": ["bad name"]}}}, ("request", "headers", "remove", 0)),
        ({"response": {"body": {}}}, ("response", "body")),
    ],
)
def test_configuration_errors_are_located(
    config: dict[str, object], path: tuple[object, ...]
) -> None:
    with pytest.raises(PluginConfigError) as err:
        PluginHarness(TransformPlugin, config)
    assert err.value.problems[0][0] == path
