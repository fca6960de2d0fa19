"""The runner's comparison rules (README section 5) on hand-made exchanges: no sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conformance.checks import Exchange, compare, compare_redirect
from tests.conformance.harness import referenced_service_ports


def exchange(status: int, echo: dict[str, Any] | None = None, **headers: str) -> Exchange:
    ex = Exchange("GET", "/", "example.com", {}, "127.0.1.1:80", status=status)
    ex.response_headers = [(k.replace("_", "-"), v) for k, v in headers.items()]
    if echo is not None:
        ex.response_headers.append(("Content-Type", "application/json"))
        ex.body = json.dumps(echo).encode()
    return ex


ECHO = {
    "path": "/v2",
    "method": "GET",
    "host": "example.com",
    "namespace": "gateway-conformance-infra",
    "pod": "infra-backend-v2-local-1",
    "headers": {"X-Header-Add": ["a", "b"], "Version": ["two"]},
}


def case(**expect: Any) -> dict[str, Any]:
    return {"request": {"path": "/v2"}, "expect": {"status": 200, **expect}}


def test_matching_echo_passes() -> None:
    c = case(
        backend="infra-backend-v2",
        namespace="gateway-conformance-infra",
        request={
            "path": "/v2",
            "method": "GET",
            "host": "example.com",
            "headers": {"version": "two"},
        },
    )
    assert compare(c, exchange(200, ECHO), "/v2") == []


@pytest.mark.parametrize(
    ("expect", "fragment"),
    [
        ({"backend": "infra-backend-v1"}, "backend"),
        ({"namespace": "gateway-conformance-web-backend"}, "namespace"),
        ({"request": {"path": "/v2/", "method": "GET"}}, "backend path"),
        ({"request": {"path": "/v2", "method": "POST"}}, "backend method"),
        ({"request": {"path": "/v2", "method": "GET", "host": "example.com:80"}}, "backend host"),
        ({"request": {"path": "/v2", "method": "GET", "headers": {"X-Nope": "x"}}}, "absent"),
        (
            {"request": {"path": "/v2", "method": "GET", "absentHeaders": ["version"]}},
            "expected absent",
        ),
        ({"response": {"headers": {"X-Resp": "1"}}}, "response header"),
        ({"status": 404}, "status"),
    ],
)
def test_each_mismatch_is_reported(expect: dict[str, Any], fragment: str) -> None:
    c = case(**expect)
    path = (expect.get("request") or {}).get("path", "/v2")
    mismatches = compare(c, exchange(200, ECHO), path)
    assert mismatches and fragment in " ".join(mismatches)


def test_header_values_join_with_comma_and_no_space() -> None:
    ok = case(request={"path": "/v2", "method": "GET", "headers": {"X-Header-Add": "a,b"}})
    spaced = case(request={"path": "/v2", "method": "GET", "headers": {"X-Header-Add": "a, b"}})
    assert compare(ok, exchange(200, ECHO), "/v2") == []
    assert compare(spaced, exchange(200, ECHO), "/v2")


def test_timeout_codes_are_equivalent() -> None:
    c = {"request": {}, "expect": {"status": 504}}
    assert compare(c, exchange(408), "") == []
    assert compare(c, exchange(500), "")


def test_echo_fields_only_count_with_json_content_type() -> None:
    ex = exchange(200, ECHO)
    ex.response_headers = [("Content-Type", "application/json; charset=utf-8")]
    assert compare(case(backend="infra-backend-v2"), ex, "/v2")


def test_non_2xx_checks_status_only() -> None:
    c = {"request": {}, "expect": {"statusAnyOf": [200, 500], "backend": "infra-backend-v1"}}
    assert compare(c, exchange(500), "") == []


def test_answered_by_gateway_rejects_an_echo() -> None:
    c = {"request": {}, "expect": {"statusAnyOf": [200, 204], "answeredByGateway": True}}
    assert compare(c, exchange(204), "") == []
    assert compare(c, exchange(200, ECHO), "")


def test_response_header_one_of_ignoring_whitespace() -> None:
    want = {"headersOneOf": {"A": ["x, y", "y, x"]}, "ignoreWhitespace": True}
    c = {"request": {}, "expect": {"status": 204, "response": want}}
    assert compare(c, exchange(204, A="y,x"), "") == []
    assert compare(c, exchange(204, A="x,z"), "")


@pytest.mark.parametrize(
    ("location", "want", "ok"),
    [
        ("http://example.org/p", {"scheme": "http", "host": "example.org", "path": "/p"}, True),
        ("http://example.org:80/p", {"scheme": "http", "path": "/p"}, True),
        ("http://example.org:8080/p", {"scheme": "http", "path": "/p"}, False),
        ("https://example.org:443/p", {"scheme": "https", "path": "/p"}, True),
        ("https://example.org/p", {"scheme": "https", "path": "/p", "port": "8443"}, False),
        ("http://example.org:8083/p?q=1", {"scheme": "http", "path": "/p", "port": "8083"}, True),
        ("/p", {"scheme": "http", "path": "/p"}, False),
        ("http://Example.org/p", {"scheme": "http", "host": "example.org", "path": "/p"}, False),
    ],
)
def test_redirect_location(location: str, want: dict[str, Any], ok: bool) -> None:
    assert (compare_redirect(want, location) == []) is ok


def test_referenced_service_ports() -> None:
    route = {
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "a", "port": 8082},
                        {"name": "b", "namespace": "other", "port": 8080},
                        {"name": "c", "group": "x.example.com", "kind": "Thing", "port": 1},
                    ],
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {"backendRef": {"name": "m", "port": 8080}},
                        }
                    ],
                }
            ]
        },
    }
    assert referenced_service_ports([route]) == {
        ("ns", "a"): {8082},
        ("other", "b"): {8080},
        ("ns", "m"): {8080},
    }
