"""SecurityPolicy and Consumer: schema, located problems, and the rate-limit keys that
need an identity (Consumer, JWTClaim)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import bcrypt
import pytest

from turnout.config.parse import parse_text
from turnout.config.problems import Problem
from turnout.config.validate import validate
from turnout.testing.manifests import backend, dump, gateway, route, to

BASE = (gateway(), backend("b", 8080), route("api", [{**to("b"), "name": "main"}]))
REMOTE = {"uri": "http://127.0.0.1:8081/jwks.json", "cacheDuration": "5m"}


def security(name: str = "sp", targets: list[dict[str, Any]] | None = None, **spec: Any) -> Any:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": name},
        "spec": {"targetRefs": targets or [{"kind": "HTTPRoute", "name": "api"}], **spec},
    }


def consumer(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Consumer",
        "metadata": {"name": name},
        "spec": spec,
    }


def traffic(key: dict[str, Any], targets: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "tp"},
        "spec": {
            "targetRefs": targets or [{"kind": "HTTPRoute", "name": "api"}],
            "rateLimit": {"rules": [{"key": key, "limit": {"requests": 5, "unit": "Second"}}]},
        },
    }


def problems(*objects: dict[str, Any]) -> list[Problem]:
    resources, parse_problems = parse_text(dump(*BASE, *objects), "m.yaml")
    _, more = validate(resources)
    return parse_problems + more


def found(ps: list[Problem], severity: str = "error") -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in ps if p.severity == severity]


def provider(**fields: Any) -> dict[str, Any]:
    return {"name": "idp", "remoteJWKS": REMOTE, **fields}


def test_the_issue_example_is_valid() -> None:
    users = "alice:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    ps = problems(
        security(
            "api-auth",
            jwt={
                "providers": [
                    provider(
                        issuer="https://idp.example.com",
                        audiences=["api"],
                        algorithms=["RS256", "ES256"],
                        clockSkew="30s",
                        claimToHeaders=[{"claim": "sub", "header": "x-user-id"}],
                        extractFrom={
                            "headers": [{"name": "Authorization", "valuePrefix": "Bearer "}]
                        },
                    )
                ],
                "optional": False,
            },
            apiKeyAuth={
                "extractFrom": [{"header": "x-api-key"}],
                "forwardConsumerHeader": "x-consumer",
            },
            basicAuth={"users": {"inline": users}},
            authorization={
                "defaultAction": "Deny",
                "rules": [
                    {
                        "action": "Allow",
                        "principal": {
                            "consumers": ["mobile-app"],
                            "jwt": {"claims": [{"name": "groups", "values": ["admins"]}]},
                            "clientCIDRs": ["10.0.0.0/8"],
                        },
                    }
                ],
            },
            ipRules={"allow": ["127.0.0.0/8"], "deny": ["127.0.0.2/32"]},
            clientIPDetection={"xForwardedFor": {"numTrustedHops": 1}},
            cors={
                "allowOrigins": ["https://*.example.com", "https://app.example.org"],
                "allowMethods": ["GET", "POST"],
                "allowHeaders": ["content-type", "authorization"],
                "exposeHeaders": ["x-request-id"],
                "maxAge": "10m",
                "allowCredentials": True,
            },
            responseHeaders={
                "hsts": {"maxAge": "1y", "includeSubDomains": True},
                "frameOptions": "DENY",
                "contentTypeOptions": True,
            },
        ),
        consumer(
            "mobile-app",
            apiKeys=[
                {"sha256": "ab" * 32, "expiresAt": "2027-01-01T00:00:00Z"},
                {"key": "plain-text-key-only-for-files"},
            ],
            groups=["partners"],
        ),
    )
    assert ps == []


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_never_allowed(alg: str) -> None:
    ps = problems(security(jwt={"providers": [provider(algorithms=["RS256", alg])]}))
    assert found(ps) == [
        ("spec.jwt.providers[0].algorithms[1]", "algorithm 'none' is never allowed")
    ]


def test_unknown_algorithms_and_hs_with_public_keys() -> None:
    ps = problems(security(jwt={"providers": [provider(algorithms=["RS1", "HS256"])]}))
    messages = dict(found(ps))
    assert messages["spec.jwt.providers[0].algorithms[0]"].startswith("unknown algorithm 'RS1'")
    assert "only localJWKS 'oct' keys" in messages["spec.jwt.providers[0].algorithms"]


def _oct(secret: bytes, kid: str = "h1") -> str:
    k = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
    return json.dumps({"keys": [{"kty": "oct", "kid": kid, "k": k}]})


def test_local_jwks_checks() -> None:
    local = {"name": "idp", "algorithms": ["HS256"]}
    ok = problems(
        security(jwt={"providers": [{**local, "localJWKS": {"inline": _oct(b"s" * 32)}}]})
    )
    assert found(ok) == []
    short = problems(security(jwt={"providers": [{**local, "localJWKS": {"inline": _oct(b"s")}}]}))
    assert "at least 32 bytes" in found(short)[0][1]
    rsa_only = json.dumps({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]})
    no_oct = problems(security(jwt={"providers": [{**local, "localJWKS": {"inline": rsa_only}}]}))
    assert any("no 'oct'" in m for _, m in found(no_oct))
    junk = problems(security(jwt={"providers": [{**local, "localJWKS": {"inline": "[1]"}}]}))
    assert found(junk) == [
        (
            "spec.jwt.providers[0].localJWKS.inline",
            'localJWKS: expected a JWKS document: {"keys": [{...}, ...]}',
        )
    ]
    both = problems(security(jwt={"providers": [provider(localJWKS={"inline": _oct(b"s" * 32)})]}))
    assert ("spec.jwt.providers[0]", "give exactly one of remoteJWKS or localJWKS") in found(both)


def test_durations_and_uris_are_checked_by_the_schema() -> None:
    ps = problems(
        security(
            jwt={
                "providers": [
                    provider(remoteJWKS={"uri": "ftp://x/jwks", "cacheDuration": "5 minutes"}),
                ]
            },
            cors={"allowOrigins": ["*"], "maxAge": "10 minutes"},
            responseHeaders={"hsts": {"maxAge": "1 year"}},
        )
    )
    paths = {p.path for p in ps if p.severity == "error"}
    assert {
        "spec.jwt.providers[0].remoteJWKS.uri",
        "spec.jwt.providers[0].remoteJWKS.cacheDuration",
        "spec.cors.maxAge",
        "spec.responseHeaders.hsts.maxAge",
    } <= paths


def test_htpasswd_accepts_bcrypt_only_and_names_the_line() -> None:
    good = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    users = "\n".join(
        [
            f"alice:{good}",
            "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
            "carol:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/",
            "dave:secret-in-plain-text",
            "erin:$6$salt$hash",
            "frank",
            f"alice:{good}",
        ]
    )
    ps = problems(security(basicAuth={"users": {"inline": users}}))
    messages = [m for _, m in found(ps)]
    assert messages[0].startswith("line 2: user 'bob' has a {SHA} (SHA-1) hash; only bcrypt")
    assert messages[1].startswith("line 3: user 'carol' has an MD5 (apr1) hash")
    assert messages[2].startswith("line 4: user 'dave' has a plain-text password")
    assert messages[3].startswith("line 5: user 'erin' has a SHA-crypt hash")
    assert messages[4] == "line 6: expected 'user:bcrypt-hash'"
    assert messages[5] == "line 7: user 'alice' is listed twice"
    assert all("secret-in-plain-text" not in m for m in messages)
    assert {p for p, _ in found(ps)} == {"spec.basicAuth.users.inline"}


def test_cidrs_origins_and_principals() -> None:
    ps = problems(
        security(
            ipRules={"allow": ["10.0.0.0/8", "10.0.0.300/8"], "deny": ["::1/129"]},
            cors={"allowOrigins": ["https://*.example.com", "https://example.com/", "*"]},
            authorization={"rules": [{"action": "Allow", "principal": {}}]},
        )
    )
    assert found(ps) == [
        (
            "spec.authorization.rules[0].principal",
            "a principal needs consumers, groups, jwt or clientCIDRs",
        ),
        ("spec.ipRules.allow[1]", "'10.0.0.300/8' is not an IP address or CIDR range"),
        ("spec.ipRules.deny[0]", "'::1/129' is not an IP address or CIDR range"),
        (
            "spec.cors.allowOrigins[1]",
            "'https://example.com/' is not an origin: use '*' alone or scheme://host[:port] "
            "(no path; the host may start with '*.')",
        ),
        ("spec.cors.allowOrigins", "'*' must be the only origin"),
    ]


def test_missing_targets_are_warnings() -> None:
    ps = problems(
        security(
            targets=[
                {"kind": "HTTPRoute", "name": "nope"},
                {"kind": "Gateway", "name": "gw", "sectionName": "nope"},
                {"kind": "HTTPRoute", "name": "api", "sectionName": "main"},
            ],
            cors={"allowOrigins": ["*"]},
        )
    )
    assert found(ps, "warning") == [
        ("spec.targetRefs[0].name", "HTTPRoute default/nope does not exist"),
        ("spec.targetRefs[1].sectionName", "Gateway default/gw has no listener 'nope'"),
    ]
    assert found(ps) == []


def test_identity_headers_cannot_be_gateway_owned() -> None:
    ps = problems(
        security(
            jwt={"providers": [provider(claimToHeaders=[{"claim": "sub", "header": "Host"}])]},
            apiKeyAuth={"forwardConsumerHeader": "X-Forwarded-For"},
        ),
        consumer("c", apiKeys=[{"key": "k" * 16}]),
    )
    assert found(ps) == [
        (
            "spec.jwt.providers[0].claimToHeaders[0].header",
            "header 'host' cannot carry an identity",
        ),
        (
            "spec.apiKeyAuth.forwardConsumerHeader",
            "header 'x-forwarded-for' cannot carry an identity",
        ),
    ]


def test_identity_headers_cannot_be_the_ones_that_vouch_for_the_client() -> None:
    ps = problems(
        security(
            jwt={"providers": [provider(claimToHeaders=[{"claim": "sub", "header": "Forwarded"}])]},
            apiKeyAuth={"forwardConsumerHeader": "X-Forwarded-Client-Cert"},
        ),
        consumer("c", apiKeys=[{"key": "k" * 16}]),
    )
    assert found(ps) == [
        (
            "spec.jwt.providers[0].claimToHeaders[0].header",
            "header 'forwarded' cannot carry an identity",
        ),
        (
            "spec.apiKeyAuth.forwardConsumerHeader",
            "header 'x-forwarded-client-cert' cannot carry an identity",
        ),
    ]


def test_consumer_keys_are_hashed_at_parse_time_and_unique() -> None:
    plain = "plain-text-key-only-for-files"
    resources, ps = parse_text(dump(consumer("a", apiKeys=[{"key": plain}])), "c.yaml")
    assert ps == []
    dumped = resources[0].obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped["spec"]["apiKeys"] == [{"sha256": hashlib.sha256(plain.encode()).hexdigest()}]
    assert plain not in json.dumps(dumped)
    _, ps = parse_text(dump(consumer("a", apiKeys=[{"key": "short"}])), "c.yaml")
    assert [p.message for p in ps] == [
        "an API key needs at least 16 printable characters without spaces"
    ]
    assert "short" not in str(ps[0])
    _, ps = parse_text(dump(consumer("a", apiKeys=[{"key": plain, "sha256": "ab" * 32}])), "c.yaml")
    assert [p.message for p in ps] == ["give key or sha256, not both"]
    _, ps = parse_text(dump(consumer("a", apiKeys=[{"sha256": "xyz"}])), "c.yaml")
    assert [p.message for p in ps] == [
        "sha256 must be 64 hexadecimal digits (the SHA-256 of the key)"
    ]
    ps = problems(
        consumer("a", apiKeys=[{"key": plain}]),
        consumer("b", apiKeys=[{"sha256": hashlib.sha256(plain.encode()).hexdigest()}]),
    )
    assert found(ps) == [("spec.apiKeys[0]", "this key is also a key of Consumer default/a")]


def test_identity_rate_limit_keys_need_a_covering_security_policy() -> None:
    ps = problems(traffic({"type": "Consumer"}))
    assert found(ps) == [
        (
            "spec.rateLimit.rules[0].key.type",
            "rate-limit keys of type Consumer need a SecurityPolicy with authentication "
            "(jwt, apiKeyAuth or basicAuth) on the same target; none covers HTTPRoute default/api",
        )
    ]
    # A policy without authentication does not count.
    assert found(problems(traffic({"type": "Consumer"}), security(cors={"allowOrigins": ["*"]})))
    api_keys = security(apiKeyAuth={})
    assert found(problems(traffic({"type": "Consumer"}), api_keys)) == []
    # JWTClaim needs jwt itself, and a claim name.
    ps = problems(traffic({"type": "JWTClaim", "name": "sub"}), api_keys)
    assert "need a SecurityPolicy with jwt authentication" in found(ps)[0][1]
    jwt = security(jwt={"providers": [provider()]})
    assert found(problems(traffic({"type": "JWTClaim", "name": "sub"}), jwt)) == []
    assert found(problems(traffic({"type": "JWTClaim"}), jwt)) == [
        ("spec.rateLimit.rules[0].key.name", "a JWTClaim key needs the claim name")
    ]
    # A Gateway-level policy covers the routes attached to that Gateway.
    on_gateway = security(targets=[{"kind": "Gateway", "name": "gw"}], apiKeyAuth={})
    assert found(problems(traffic({"type": "Consumer"}), on_gateway)) == []
    # A rule-level policy covers that rule, not the whole route.
    on_rule = security(
        targets=[{"kind": "HTTPRoute", "name": "api", "sectionName": "main"}], apiKeyAuth={}
    )
    assert found(problems(traffic({"type": "Consumer"}), on_rule))
    rule_target = [{"kind": "HTTPRoute", "name": "api", "sectionName": "main"}]
    assert found(problems(traffic({"type": "Consumer"}, rule_target), on_rule)) == []


def test_brute_force_needs_authentication_and_positive_durations() -> None:
    ps = problems(security(cors={"allowOrigins": ["*"]}, bruteForce={"banFor": "0s"}))
    assert found(ps) == [
        (
            "spec.bruteForce",
            "bruteForce counts failed authentications: give jwt, apiKeyAuth or basicAuth",
        ),
        ("spec.bruteForce.banFor", "must be longer than 0s"),
    ]
    ps = problems(
        security(apiKeyAuth={}, bruteForce={"maxFailures": 5, "window": "1m", "banFor": "1h"}),
        consumer("c", apiKeys=[{"key": "k" * 16}]),
    )
    assert found(ps) == []
    ps = problems(security(apiKeyAuth={}, bruteForce={"maxFailures": 0}))
    assert [p.path for p in ps if p.severity == "error"] == ["spec.bruteForce.maxFailures"]
