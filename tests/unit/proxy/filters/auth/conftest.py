"""Keys, tokens and requests for the auth filter tests (made here, with PyJWT and
cryptography: nothing is read from disk or the network)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from turnout.proxy.protocols.heads import RequestHead

ISSUER = "https://idp.example.com"
AUDIENCE = "api"


class Signer:
    """A private key with its public JWK (``kid``) and a token factory."""

    def __init__(self, kid: str, key: Any, alg: str) -> None:
        self.kid = kid
        self.key = key
        self.alg = alg
        algo = jwt.get_algorithm_by_name(alg)
        self.jwk: dict[str, Any] = json.loads(algo.to_jwk(key.public_key()))
        self.jwk["kid"] = kid

    def token(self, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        head = {"kid": self.kid, **(headers or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(payload, self.key, algorithm=self.alg, headers=head)


@pytest.fixture(scope="session")
def rsa_signer() -> Signer:
    return Signer("k1", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


@pytest.fixture(scope="session")
def rsa_signer2() -> Signer:
    return Signer("k2", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


@pytest.fixture(scope="session")
def ec_signer() -> Signer:
    return Signer("e1", ec.generate_private_key(ec.SECP256R1()), "ES256")


@pytest.fixture(scope="session")
def attacker() -> Signer:
    return Signer("k1", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def jwks(*signers: Signer) -> str:
    return json.dumps({"keys": [s.jwk for s in signers]})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature))
    )


def request(
    headers: dict[str, str] | None = None,
    method: str = "GET",
    path: str = "/",
    query: str = "",
    forwarded_for: str | None = None,
) -> RequestHead:
    pairs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    head = RequestHead(method.encode(), path.encode(), query.encode(), pairs, b"api", "api")
    head.forwarded_for = forwarded_for.encode() if forwarded_for is not None else None
    return head


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
