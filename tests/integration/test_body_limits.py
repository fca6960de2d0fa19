"""Per-route request body limits (TrafficPolicy ``requestBodyLimit``, issue 20 item 11):
413 with a JSON body and a closed connection over HTTP/1.1 (declared length or chunked)
and HTTP/2, the upstream never getting a complete oversized request; other routes keep
the gateway's own limit."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.samples.echo import EchoState
from turnout.testing import free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.requests import request

LIMIT = 1000


@dataclass
class Env:
    port: int
    echo: EchoState


@pytest.fixture(scope="module")
def env(echo_module: EchoFactory, serve_module: ServeFactory) -> Iterator[Env]:
    echo = echo_module(pod="limits-0")
    port = free_port()
    policy: dict[str, Any] = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "small-bodies"},
        "spec": {
            "targetRefs": [{"kind": "HTTPRoute", "name": "small"}],
            "requestBodyLimit": LIMIT,
        },
    }
    serve_module(
        dump(
            gateway("gw", port),
            backend("echo", echo.port),
            route("small", [to("echo", "/small")]),
            route("big", [to("echo", "/big")]),
            policy,
        )
    )
    yield Env(port, echo)


def _raw(port: int, data: bytes) -> tuple[bytes, bool]:
    """Send ``data``, read to EOF: (the reply, whether the gateway closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            got = s.recv(65536)
            if not got:
                return out, True
            out += got


def _error(reply: bytes) -> dict[str, Any]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"content-type: application/json" in head.lower()
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def test_a_body_within_the_limit_passes(env: Env) -> None:
    reply = request(env.port, "/small", method="POST", body=b"x" * LIMIT)
    assert reply.status == 200


def test_a_declared_length_over_the_limit_is_refused_before_the_upstream(env: Env) -> None:
    before = env.echo.requests
    head = b"POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1)
    reply, closed = _raw(env.port, head + b"x" * (LIMIT + 1))
    assert _error(reply)["error"] == "body_too_large"
    assert closed
    assert env.echo.requests == before


def test_a_chunked_body_over_the_limit_is_refused_and_never_completes_upstream(
    env: Env,
) -> None:
    before = env.echo.requests
    chunk = b"x" * 600
    body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n"
    head = b"POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    reply, closed = _raw(env.port, head + body)
    assert _error(reply)["error"] == "body_too_large"
    assert closed
    assert env.echo.requests == before  # at most an aborted request, never a complete one


def test_other_routes_keep_the_gateways_own_limit(env: Env) -> None:
    reply = request(env.port, "/big", method="POST", body=b"x" * (LIMIT * 10))
    assert reply.status == 200


def test_http2_over_the_limit_is_413(env: Env) -> None:
    before = env.echo.requests
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        base = f"http://127.0.0.1:{env.port}"
        r = client.post(base + "/small", content=b"x" * (LIMIT + 1))
        assert r.status_code == 413
        assert r.json()["error"] == "body_too_large"
        # streamed without a length: refused when the count passes the limit
        r = client.post(base + "/small", content=iter([b"x" * 600, b"y" * 600]))
        assert r.status_code == 413
        # the connection carries on for other streams
        assert client.post(base + "/small", content=b"ok").status_code == 200
    assert env.echo.requests == before + 1
