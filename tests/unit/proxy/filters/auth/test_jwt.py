"""JWT verification against the attack classes of reliability.md b3: every token here is
made in the test (PyJWT, cryptography, or by hand for tokens PyJWT refuses to make)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.unit.proxy.filters.auth.conftest import (
    AUDIENCE,
    ISSUER,
    Signer,
    b64,
    jwks,
    raw_token,
    request,
)
from turnout.config.model.security import JWTProviderSpec, JWTSpec
from turnout.proxy.filters.auth.jwt import (
    MAX_TOKEN_BYTES,
    Fetching,
    JWTAuth,
    JWTProvider,
    Refused,
    Verified,
)


def provider(keys: str, **spec: Any) -> JWTProvider:
    base: dict[str, Any] = {
        "name": "idp",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "localJWKS": {"inline": keys},
        "clockSkew": "5s",
    }
    base.update(spec)
    return JWTProvider(JWTProviderSpec.model_validate(base))


def verify(p: JWTProvider, token: str | bytes, loop: asyncio.AbstractEventLoop) -> Any:
    data = token.encode() if isinstance(token, str) else token
    return p.verify(data, True, loop)


def refused(outcome: Any, reason: str) -> None:
    assert isinstance(outcome, Refused), outcome
    assert reason in outcome.reason, outcome.reason


def test_a_good_token_is_verified(rsa_signer: Signer, loop: asyncio.AbstractEventLoop) -> None:
    outcome = verify(provider(jwks(rsa_signer)), rsa_signer.token(groups=["admins"]), loop)
    assert isinstance(outcome, Verified)
    assert outcome.claims["sub"] == "alice"
    assert outcome.claims["groups"] == ["admins"]


def test_ec_and_kidless_tokens(
    rsa_signer: Signer, ec_signer: Signer, loop: asyncio.AbstractEventLoop
) -> None:
    p = provider(jwks(rsa_signer, ec_signer), algorithms=["RS256", "ES256"])
    assert isinstance(verify(p, ec_signer.token(), loop), Verified)
    # Without a kid every key for the token's algorithm is tried.
    assert isinstance(verify(p, rsa_signer.token(headers={"kid": None}), loop), Verified)
    # ES256 is not in the default allow-list.
    refused(verify(provider(jwks(ec_signer)), ec_signer.token(), loop), "algorithm")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused_in_every_casing(
    alg: str, rsa_signer: Signer, loop: asyncio.AbstractEventLoop
) -> None:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300}
    for signature in (b"", b"x"):
        token = raw_token({"alg": alg, "kid": "k1", "typ": "JWT"}, claims, signature)
        refused(verify(provider(jwks(rsa_signer)), token, loop), "algorithm is not allowed")


def _hs256_with_public_key(signer: Signer, kid: str | None = "k1") -> str:
    pem = signer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300}
    signing_input = (
        b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    ).encode()
    signature = hmac.new(pem, signing_input, hashlib.sha256).digest()
    return signing_input.decode() + "." + b64(signature)


def test_hs256_signed_with_the_rsa_public_key_is_refused(
    rsa_signer: Signer, loop: asyncio.AbstractEventLoop
) -> None:
    token = _hs256_with_public_key(rsa_signer)
    refused(verify(provider(jwks(rsa_signer)), token, loop), "algorithm is not allowed")
    # Even a provider (mis)configured to allow HS256 binds the RSA key to RS*/PS* only:
    # the token finds no key to be checked with.
    lenient = provider(jwks(rsa_signer), algorithms=["RS256", "HS256"])
    refused(verify(lenient, token, loop), "signing key is unknown")
    refused(verify(lenient, _hs256_with_public_key(rsa_signer, kid=None), loop), "unknown")


# Claims as functions of the current time: parameters are made at collection, and a long
# run reaches this test many minutes later (a fixed "now + 600" had become the past).
@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (lambda now: {"exp": now - 60}, "expired"),
        (lambda now: {"nbf": now + 600}, "not valid yet"),
        (lambda now: {"aud": "someone-else"}, "audience"),
        (lambda now: {"iss": "https://evil.example.com"}, "issuer"),
        (lambda now: {"exp": None}, "required claim"),
    ],
    ids=["expired", "nbf", "aud", "iss", "no-exp"],
)
def test_claims_are_checked(
    claims: Callable[[int], dict[str, Any]],
    reason: str,
    rsa_signer: Signer,
    loop: asyncio.AbstractEventLoop,
) -> None:
    token = rsa_signer.token(**claims(int(time.time())))
    refused(verify(provider(jwks(rsa_signer)), token, loop), reason)


def test_clock_skew_is_tolerated(rsa_signer: Signer, loop: asyncio.AbstractEventLoop) -> None:
    token = rsa_signer.token(exp=int(time.time()) - 2)
    assert isinstance(verify(provider(jwks(rsa_signer)), token, loop), Verified)  # skew 5s


def test_unknown_kid_and_kid_traversal(rsa_signer: Signer, loop: asyncio.AbstractEventLoop) -> None:
    p = provider(jwks(rsa_signer))
    for kid in ("k9", "../../dev/null", "/etc/passwd", "k1' OR '1'='1", ""):
        refused(verify(p, rsa_signer.token(headers={"kid": kid}), loop), "signing key is unknown")


def test_embedded_jwk_jku_and_x5u_are_ignored(
    rsa_signer: Signer, attacker: Signer, loop: asyncio.AbstractEventLoop
) -> None:
    p = provider(jwks(rsa_signer))
    # The attacker signs with their own key and ships it (or a URL to it) in the header,
    # reusing the real kid: the real key is used, and the signature fails.
    for extra in (
        {"jwk": attacker.jwk},
        {"jku": "http://127.0.0.1:1/attacker-jwks.json"},
        {"x5u": "http://127.0.0.1:1/attacker.pem"},
        {"jwk": attacker.jwk, "kid": None},
    ):
        refused(verify(p, attacker.token(headers=extra), loop), "signature is invalid")
    # A kid naming only the embedded key matches nothing.
    token = attacker.token(headers={"jwk": {**attacker.jwk, "kid": "evil"}, "kid": "evil"})
    refused(verify(p, token, loop), "signing key is unknown")


def test_unknown_crit_is_refused(rsa_signer: Signer, loop: asyncio.AbstractEventLoop) -> None:
    p = provider(jwks(rsa_signer))
    for crit in (["exp"], ["urn:example:whatever"], ["b64"]):
        refused(verify(p, rsa_signer.token(headers={"crit": crit}), loop), "")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "a.b",
        "!!!!.????.****",
        "eyJhbGciOiJSUzI1NiJ9.%%%%.abc",
        b64(b"[1,2]") + "." + b64(b"{}") + ".",
        b64(b'{"alg":"RS256","kid":7}') + "." + b64(b"{}") + ".",
        b64(b'{"alg":"RS256","kid":"k1"}') + "." + b64(b"[" * 5000 + b"]" * 5000) + ".x",
    ],
)
def test_malformed_tokens_are_refused(
    token: str, rsa_signer: Signer, loop: asyncio.AbstractEventLoop
) -> None:
    assert isinstance(verify(provider(jwks(rsa_signer)), token, loop), Refused)


def test_huge_tokens_are_refused_before_parsing(
    rsa_signer: Signer, loop: asyncio.AbstractEventLoop
) -> None:
    p = provider(jwks(rsa_signer))
    huge = rsa_signer.token(padding="x" * (10 * 1024 * 1024))
    refused(verify(p, huge, loop), "too large")
    edge = rsa_signer.token(padding="x" * (MAX_TOKEN_BYTES * 3 // 4 - 1000))
    assert len(edge) < MAX_TOKEN_BYTES
    assert isinstance(verify(p, edge, loop), Verified)


def test_hs256_with_an_inline_shared_secret(loop: asyncio.AbstractEventLoop) -> None:
    import jwt as pyjwt

    secret = b"s" * 32
    keys = json.dumps({"keys": [{"kty": "oct", "kid": "h1", "k": b64(secret)}]})
    p = provider(keys, algorithms=["HS256"])
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc", "exp": now + 60}
    good = pyjwt.encode(claims, secret, algorithm="HS256", headers={"kid": "h1"})
    assert isinstance(verify(p, good, loop), Verified)
    bad = pyjwt.encode(claims, b"t" * 32, algorithm="HS256", headers={"kid": "h1"})
    refused(verify(p, bad, loop), "signature")


def test_several_providers_choose_by_issuer(
    rsa_signer: Signer, rsa_signer2: Signer, loop: asyncio.AbstractEventLoop
) -> None:
    spec = JWTSpec.model_validate(
        {
            "providers": [
                {"name": "a", "issuer": ISSUER, "localJWKS": {"inline": jwks(rsa_signer)}},
                {
                    "name": "b",
                    "issuer": "https://other.example.com",
                    "localJWKS": {"inline": jwks(rsa_signer2)},
                },
            ]
        }
    )
    auth = JWTAuth(spec)
    first = auth.verify(rsa_signer.token(aud=None).encode(), loop)
    assert isinstance(first, Verified) and first.provider.name == "a"
    token = rsa_signer2.token(iss="https://other.example.com", aud=None)
    second = auth.verify(token.encode(), loop)
    assert isinstance(second, Verified) and second.provider.name == "b"
    # Signed by b's key but claiming a's issuer: a verifies it and refuses.
    assert isinstance(auth.verify(rsa_signer2.token(aud=None).encode(), loop), Refused)
    assert isinstance(
        auth.verify(rsa_signer.token(iss="https://nobody", aud=None).encode(), loop), Refused
    )


def test_tokens_are_extracted_from_the_configured_places(rsa_signer: Signer) -> None:
    token = rsa_signer.token()
    default = provider(jwks(rsa_signer))
    assert default.extract(request({"Authorization": f"Bearer {token}"})) == token.encode()
    assert default.extract(request({"Authorization": f"bearer {token}"})) == token.encode()
    assert default.extract(request({"Authorization": f"Basic {token}"})) is None
    assert default.extract(request()) is None
    custom = provider(
        jwks(rsa_signer),
        extractFrom={"headers": [{"name": "X-Token"}], "cookies": ["jwt"], "params": ["tok"]},
    )
    assert custom.extract(request({"X-Token": token})) == token.encode()
    assert custom.extract(request({"Cookie": f"a=b; jwt={token}"})) == token.encode()
    head = request(query=f"x=1&tok={token}&y=2")
    assert custom.extract(head) == token.encode()
    assert head.query == b"x=1&y=2"  # never forwarded, never logged


def test_remote_keys_ask_for_a_fetch_instead_of_blocking(rsa_signer: Signer) -> None:
    p = provider(
        jwks(rsa_signer),
        localJWKS=None,
        remoteJWKS={"uri": "http://127.0.0.1:9/jwks.json", "cacheDuration": "1s"},
    )

    async def run() -> Any:
        loop = asyncio.get_running_loop()
        first = p.verify(rsa_signer.token().encode(), False, loop)
        assert isinstance(first, Fetching)
        started = time.monotonic()
        await first.keys.wait()  # port 9: refused at once
        assert time.monotonic() - started < 2.5
        return p.verify(rsa_signer.token().encode(), True, loop)

    outcome = asyncio.run(run())
    assert isinstance(outcome, Refused) and outcome.unavailable
