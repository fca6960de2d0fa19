"""CORS origin matching (exact, wildcard subdomains, '*'), preflights and actual
responses."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.proxy.filters.auth.conftest import request
from turnout.config.model.security import CORSSpec
from turnout.config.security import parse_origin
from turnout.proxy.filters.auth.cors import CORSPolicy


def cors(**spec: Any) -> CORSPolicy:
    return CORSPolicy(CORSSpec.model_validate(spec))


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.org", True),
        ("HTTPS://APP.EXAMPLE.ORG", True),
        ("https://a.example.com", True),
        ("https://a.b.example.com", True),
        ("https://example.com", False),  # the wildcard means strict subdomains
        ("https://evilexample.com", False),
        ("https://a.example.com.evil.net", False),
        ("http://a.example.com", False),  # scheme differs
        ("https://a.example.com:8443", False),  # port differs
        ("https://b.example.net:8443", True),
        ("https://b.example.net", False),
        ("null", False),
        ("https://app.example.org.evil.net", False),
    ],
)
def test_origin_matching(origin: str, allowed: bool) -> None:
    policy = cors(
        allowOrigins=[
            "https://*.example.com",
            "https://app.example.org",
            "https://*.example.net:8443",
        ]
    )
    assert policy.allows(origin.encode()) is allowed


@pytest.mark.parametrize(
    "text", ["https://example.com/", "example.com", "https://*example.com", "https://a.*.com"]
)
def test_bad_origins_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        parse_origin(text)


def test_preflight_answers() -> None:
    policy = cors(
        allowOrigins=["https://*.example.com"],
        allowMethods=["GET", "POST"],
        allowHeaders=["content-type", "authorization"],
        maxAge="10m",
        allowCredentials=True,
    )
    head = request(
        {
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        method="OPTIONS",
    )
    headers = dict(policy.preflight(b"https://app.example.com", head))
    assert headers[b"access-control-allow-origin"] == b"https://app.example.com"
    assert headers[b"access-control-allow-credentials"] == b"true"
    assert headers[b"access-control-allow-methods"] == b"GET, POST"
    assert headers[b"access-control-allow-headers"] == b"content-type, authorization"
    assert headers[b"access-control-max-age"] == b"600"
    refused = dict(policy.preflight(b"https://evil.net", head))
    assert not any(name.startswith(b"access-control-") for name in refused)


def test_actual_responses() -> None:
    strict = cors(allowOrigins=["https://app.example.org"], exposeHeaders=["x-request-id"])
    ok = dict(strict.actual(b"https://app.example.org"))
    assert ok[b"access-control-allow-origin"] == b"https://app.example.org"
    assert ok[b"access-control-expose-headers"] == b"x-request-id"
    assert ok[b"vary"] == b"Origin"
    assert strict.actual(b"https://evil.net") == [(b"vary", b"Origin")]
    anyone = cors(allowOrigins=["*"])
    assert dict(anyone.actual(b"https://x.net"))[b"access-control-allow-origin"] == b"*"
    # '*' never goes out with credentials: the caller's origin is reflected instead.
    creds = cors(allowOrigins=["*"], allowCredentials=True)
    headers = dict(creds.actual(b"https://x.net"))
    assert headers[b"access-control-allow-origin"] == b"https://x.net"
    assert headers[b"access-control-allow-credentials"] == b"true"
