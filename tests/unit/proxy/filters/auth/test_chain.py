"""A whole SecurityPolicy as one AuthFilter: order of the steps, challenges, identity
headers (and their forgeries), authorization rules, CORS and security headers."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.proxy.filters.auth.conftest import Signer, jwks, request
from turnout.config.model.security import ConsumerObject, SecurityPolicyObject
from turnout.proxy.filters.auth.chain import AuthFilter, AuthVerdict
from turnout.proxy.protocols.heads import RequestHead

KEY_MOBILE = "mobile-0123456789abcdef"
KEY_PARTNER = "partner-0123456789abcdef"


def consumers() -> list[ConsumerObject]:
    return [
        ConsumerObject.model_validate(
            {
                "apiVersion": "turnout.dev/v1alpha1",
                "kind": "Consumer",
                "metadata": {"name": name},
                "spec": {"apiKeys": [{"key": key}], "groups": groups},
            }
        )
        for name, key, groups in (
            ("mobile-app", KEY_MOBILE, ["apps"]),
            ("partner", KEY_PARTNER, ["partners"]),
            ("alice", "alice-0123456789abcdef", ["admins"]),
        )
    ]


def auth_filter(signer: Signer | None = None, **spec: Any) -> AuthFilter:
    if signer is not None:
        spec.setdefault(
            "jwt",
            {
                "providers": [
                    {
                        "name": "idp",
                        "localJWKS": {"inline": jwks(signer)},
                        "claimToHeaders": [
                            {"claim": "sub", "header": "X-User-Id"},
                            {"claim": "org.id", "header": "x-org"},
                        ],
                    }
                ]
            },
        )
    policy = SecurityPolicyObject.model_validate(
        {
            "apiVersion": "turnout.dev/v1alpha1",
            "kind": "SecurityPolicy",
            "metadata": {"name": "p"},
            "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "r"}], **spec},
        }
    )
    return AuthFilter(policy, consumers())


def check(f: AuthFilter, head: RequestHead, peer: bytes = b"127.0.0.1") -> AuthVerdict:
    loop = asyncio.new_event_loop()
    try:
        verdict = f.check(head, peer, loop)
    finally:
        loop.close()
    assert isinstance(verdict, AuthVerdict)
    return verdict


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def forwarded(head: RequestHead, name: bytes) -> list[bytes]:
    return [v for n, v in head.headers if n == name]


def test_missing_credentials_name_every_method(rsa_signer: Signer) -> None:
    f = auth_filter(rsa_signer, apiKeyAuth={}, basicAuth={"users": {"inline": "# none"}})
    v = check(f, request())
    assert (v.status, v.code) == (401, b"unauthorized")
    challenges = [value for name, value in v.headers if name == b"www-authenticate"]
    assert challenges == [
        b'Bearer realm="turnout"',
        b'ApiKey realm="turnout"',
        b'Basic realm="turnout"',
    ]


def test_an_invalid_credential_never_falls_back(rsa_signer: Signer, attacker: Signer) -> None:
    f = auth_filter(rsa_signer, apiKeyAuth={})
    v = check(f, request(bearer(attacker.token(), **{"x-api-key": KEY_MOBILE})))
    assert v.status == 401
    assert (b"www-authenticate", b'Bearer realm="turnout", error="invalid_token"') in v.headers
    token = attacker.token()
    assert token.encode() not in v.message and token.encode() not in b"".join(
        value for _, value in v.headers
    )
    v = check(f, request({"x-api-key": "wrong-key-0123456789"}))
    assert v.status == 401 and (b"www-authenticate", b'ApiKey realm="turnout"') in v.headers
    assert b"wrong-key" not in v.message


def test_jwt_identity_headers_replace_forged_ones(rsa_signer: Signer) -> None:
    f = auth_filter(rsa_signer, apiKeyAuth={"forwardConsumerHeader": "X-Consumer"})
    head = request(
        bearer(
            rsa_signer.token(org={"id": 42}),
            **{"X-User-Id": "root", "X-Consumer": "admin", "x-org": "1"},
        )
    )
    v = check(f, head)
    assert v.status == 0 and v.principal is not None
    assert v.principal.consumer == "alice" and v.principal.groups == frozenset({"admins"})
    assert v.principal.claims is not None and v.principal.claims["org"] == {"id": 42}
    assert forwarded(head, b"x-user-id") == [b"alice"]
    assert forwarded(head, b"x-org") == [b"42"]
    assert forwarded(head, b"x-consumer") == [b"alice"]


def test_api_key_consumer_and_forged_header(rsa_signer: Signer) -> None:
    f = auth_filter(apiKeyAuth={"forwardConsumerHeader": "x-consumer"})
    head = request({"x-api-key": KEY_MOBILE, "x-consumer": "partner"})
    v = check(f, head)
    assert v.status == 0 and v.principal is not None
    assert v.principal.consumer_key == b"mobile-app"
    assert forwarded(head, b"x-consumer") == [b"mobile-app"]
    # A refused request is not forwarded, but the forgery is gone all the same.
    head = request({"x-api-key": "nope-0123456789abcdef", "x-consumer": "partner"})
    assert check(f, head).status == 401 and forwarded(head, b"x-consumer") == []


def test_optional_jwt_lets_anonymous_requests_through(rsa_signer: Signer) -> None:
    f = auth_filter(
        None,
        jwt={
            "optional": True,
            "providers": [
                {
                    "name": "idp",
                    "localJWKS": {"inline": jwks(rsa_signer)},
                    "claimToHeaders": [{"claim": "sub", "header": "x-user-id"}],
                }
            ],
        },
    )
    head = request({"x-user-id": "root"})
    v = check(f, head)
    assert v.status == 0 and v.principal is None
    assert forwarded(head, b"x-user-id") == []
    assert check(f, request(bearer("garbage"))).status == 401  # a bad token still fails


def test_authorization_rules(rsa_signer: Signer) -> None:
    f = auth_filter(
        rsa_signer,
        apiKeyAuth={},
        authorization={
            "defaultAction": "Deny",
            "rules": [
                {"action": "Deny", "principal": {"clientCIDRs": ["10.9.0.0/16"]}},
                {"action": "Allow", "principal": {"consumers": ["mobile-app"]}},
                {"action": "Allow", "principal": {"groups": ["admins"]}},
                {
                    "action": "Allow",
                    "principal": {
                        "jwt": {
                            "claims": [{"name": "roles", "values": ["ops"]}],
                            "scopes": ["read"],
                        }
                    },
                },
            ],
        },
    )
    assert check(f, request({"x-api-key": KEY_MOBILE})).status == 0
    denied = check(f, request({"x-api-key": KEY_MOBILE}), peer=b"10.9.1.1")
    assert (denied.status, denied.code) == (403, b"forbidden")
    assert check(f, request({"x-api-key": KEY_PARTNER})).status == 403
    assert check(f, request(bearer(rsa_signer.token()))).status == 0  # alice is an admin
    bob = rsa_signer.token(sub="bob", roles=["dev", "ops"], scope="read write")
    assert check(f, request(bearer(bob))).status == 0
    bob_no_scope = rsa_signer.token(sub="bob", roles=["ops"], scope="write")
    assert check(f, request(bearer(bob_no_scope))).status == 403
    assert check(f, request(bearer(rsa_signer.token(sub="bob", roles="ops")))).status == 403


def test_ip_rules_then_preflight_then_authentication(rsa_signer: Signer) -> None:
    f = auth_filter(
        rsa_signer,
        ipRules={"allow": ["127.0.0.0/8"], "deny": ["127.0.0.2/32"]},
        clientIPDetection={"xForwardedFor": {"numTrustedHops": 1}},
        cors={"allowOrigins": ["https://*.example.com"], "allowMethods": ["GET", "POST"]},
        responseHeaders={
            "hsts": {"maxAge": "1y", "includeSubDomains": True},
            "frameOptions": "DENY",
            "contentTypeOptions": True,
        },
    )
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    v = check(f, request(preflight, method="OPTIONS"))  # no credentials needed
    assert v.status == 204 and v.code == b""
    assert (b"access-control-allow-origin", b"https://app.example.com") in v.headers
    # The client address comes from the trusted proxy's X-Forwarded-For entry.
    v = check(f, request(preflight, method="OPTIONS", forwarded_for="127.0.0.2"))
    assert (v.status, v.message) == (403, b"the client address is not allowed")
    assert check(f, request(forwarded_for="8.8.8.8, 127.0.0.2")).status == 403
    assert check(f, request(forwarded_for="127.0.0.2, 127.0.0.9")).status == 401
    # Refusals carry the CORS and security headers, so a browser can read them.
    v = check(f, request({"Origin": "https://app.example.com"}))
    assert v.status == 401
    names = {n for n, _ in v.headers}
    assert {b"access-control-allow-origin", b"strict-transport-security", b"vary"} <= names
    ok = check(f, request(bearer(rsa_signer.token(), Origin="https://app.example.com")))
    assert ok.status == 0 and ok.response is not None
    upstream = [(b"x-frame-options", b"SAMEORIGIN"), (b"vary", b"Accept-Encoding")]
    out = ok.response.apply(upstream)
    assert (b"x-frame-options", b"DENY") in out and (b"x-frame-options", b"SAMEORIGIN") not in out
    assert (b"strict-transport-security", b"max-age=31536000; includeSubDomains") in out
    assert (b"x-content-type-options", b"nosniff") in out
    assert (b"vary", b"Accept-Encoding") in out and (b"vary", b"Origin") in out
    plain = check(f, request(bearer(rsa_signer.token())))
    assert plain.response is not None
    assert not any(n.startswith(b"access-control-") for n, _ in plain.response.headers)
