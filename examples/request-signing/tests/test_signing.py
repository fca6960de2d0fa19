"""The plugin through the harness: no sockets, no gateway."""

from __future__ import annotations

import asyncio

import pytest
from turnout_request_signing import SigningPlugin, verify

from turnout.testing.plugins import PluginConfigError, PluginHarness

SECRET = "0123456789abcdef-test"


def test_signature_verifies() -> None:
    async def main() -> None:
        config = {"keyId": "gw1", "secret": SECRET, "signedHeaders": ["host", "content-type"]}
        async with PluginHarness(SigningPlugin, config) as h:
            out = await h.request(
                "POST",
                "/orders",
                query="page=2",
                authority="shop.example",
                headers={"content-type": "application/json", "x-signature": "forged"},
            )
            assert out.forwarded
            sig = out.header("x-signature")
            assert sig is not None and sig.startswith("keyId=gw1,headers=host;content-type,")
            stamp = out.header("x-signature-timestamp")
            assert stamp is not None
            assert verify(
                SECRET,
                "POST",
                "/orders?page=2",
                stamp,
                ["shop.example", "application/json"],
                sig.rsplit("signature=", 1)[1],
            )
            assert [v for n, v in out.head.headers if n == b"x-signature"] == [sig.encode()]
            assert h.response(out, 200).header("x-signed-by") == "gw1"

    asyncio.run(main())


def test_short_secret_is_refused_with_its_path() -> None:
    with pytest.raises(PluginConfigError) as err:
        PluginHarness(SigningPlugin, {"keyId": "gw1", "secret": "short"})
    assert err.value.problems[0][0] == ("secret",)
