"""Basic auth: bcrypt ($2a$/$2b$/$2y$) checked off the event loop, successes cached."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Coroutine
from typing import Any

import bcrypt
import pytest

from tests.unit.proxy.filters.auth.conftest import request
from turnout.config.model.security import BasicAuthSpec, SecurityPolicyObject
from turnout.proxy.filters.auth.basic import MALFORMED, BasicAuth
from turnout.proxy.filters.auth.chain import AuthFilter, AuthVerdict


def htpasswd(**users: str) -> str:
    lines = []
    for prefix, (user, password) in zip(("$2a$", "$2b$", "$2y$"), users.items(), strict=False):
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines.append(f"{user}:{prefix}{hashed[4:]}")
    return "\n".join(["# comment", "", *lines])


@pytest.fixture(scope="module")
def users() -> str:
    return htpasswd(alice="wonderland", bob="builder", carol="singer")


def basic_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_bcrypt_variants_verify_and_successes_are_cached(users: str) -> None:
    auth = BasicAuth(BasicAuthSpec.model_validate({"users": {"inline": users}}))
    assert set(auth.users) == {b"alice", b"bob", b"carol"}

    async def run() -> list[bool]:
        return [
            await auth.verify(b"alice", b"wonderland"),  # $2a$
            await auth.verify(b"bob", b"builder"),  # $2b$
            await auth.verify(b"carol", b"singer"),  # $2y$
            await auth.verify(b"alice", b"WONDERLAND"),
            await auth.verify(b"mallory", b"wonderland"),  # unknown user
            await auth.verify(b"alice", b"x" * 100),  # over bcrypt's 72 bytes
        ]

    assert asyncio.run(run()) == [True, True, True, False, False, False]
    assert auth.cached(b"alice", b"wonderland")
    assert not auth.cached(b"alice", b"WONDERLAND")
    assert not auth.cached(b"mallory", b"wonderland")


def test_credentials_are_parsed() -> None:
    assert BasicAuth.extract(request(basic_header("alice", "a:b"))) == (b"alice", b"a:b")
    assert BasicAuth.extract(request({"Authorization": "Basic !!!"})) is MALFORMED
    assert BasicAuth.extract(request({"Authorization": "Basic " + "bm9jb2xvbg=="})) is MALFORMED
    assert BasicAuth.extract(request({"Authorization": "Bearer abc"})) is None
    assert BasicAuth.extract(request()) is None


def policy(users: str) -> SecurityPolicyObject:
    return SecurityPolicyObject.model_validate(
        {
            "apiVersion": "turnout.dev/v1alpha1",
            "kind": "SecurityPolicy",
            "metadata": {"name": "p"},
            "spec": {
                "targetRefs": [{"kind": "HTTPRoute", "name": "r"}],
                "basicAuth": {"users": {"inline": users}},
            },
        }
    )


def test_the_first_check_waits_and_the_next_is_immediate() -> None:
    # A fresh hash: the success cache (per process) has never seen it.
    f = AuthFilter(policy(htpasswd(bob="builder")), [])

    async def run() -> tuple[Any, Any, Any]:
        loop = asyncio.get_running_loop()
        first = f.check(request(basic_header("bob", "builder")), b"127.0.0.1", loop)
        assert isinstance(first, Coroutine)  # bcrypt runs in the thread pool
        verdict = await first
        again = f.check(request(basic_header("bob", "builder")), b"127.0.0.1", loop)
        wrong = f.check(request(basic_header("bob", "nope")), b"127.0.0.1", loop)
        assert isinstance(wrong, Coroutine)
        return verdict, again, await wrong

    verdict, again, wrong = asyncio.run(run())
    assert isinstance(verdict, AuthVerdict) and verdict.status == 0
    assert verdict.principal is not None and verdict.principal.consumer == "bob"
    assert isinstance(again, AuthVerdict) and again.status == 0  # cached: no waiting
    assert wrong.status == 401
    assert (b"www-authenticate", b'Basic realm="turnout"') in wrong.headers
