"""SecurityPolicy ``extAuth`` through a real gateway against an authorization service on
127.0.0.1 that the test controls: allowed with headers copied to the upstream, refused
with the service's status and challenge relayed, errors (5xx, timeout, unreachable)
closed (403) or open, and the decision cache (hits never reach the service)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing import free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import eventually
from turnout.testing.requests import request


class AuthService:
    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.mode = "normal"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.checks.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers)}
                )
                if outer.mode == "down":
                    self.send_response(503)
                elif outer.mode == "slow":
                    time.sleep(2.0)
                    self.send_response(200)
                elif self.headers.get("authorization") == "Bearer good":
                    self.send_response(200)
                    self.send_header("x-user", "alice")
                    self.send_header("x-other", "not-copied")
                else:
                    self.send_response(401)
                    self.send_header("www-authenticate", 'Bearer realm="auth"')
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def auth() -> Iterator[AuthService]:
    service = AuthService()
    yield service
    service.close()


def _policy(name: str, route_name: str, **ext: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": name},
        "spec": {
            "targetRefs": [{"kind": "HTTPRoute", "name": route_name}],
            "extAuth": {
                "http": {
                    "backendRef": {"name": ext.pop("service", "authz")},
                    "path": "/check",
                    "headersToBackend": ["x-user"],
                },
                "headersToExtAuth": ["authorization"],
                "timeout": "500ms",
                **ext,
            },
        },
    }


def test_ext_auth_allow_deny_errors_and_cache(
    serve: ServeFactory, port: int, echo: EchoFactory, auth: AuthService
) -> None:
    e = echo("e-0")
    proc = serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            backend("authz", auth.port),
            backend("nowhere", free_port()),
            route("closed", [to("svc", "/closed")]),
            route("open", [to("svc", "/open")]),
            route("cached", [to("svc", "/cached")]),
            route("dead", [to("svc", "/dead")]),
            _policy("closed", "closed"),
            _policy("open", "open", failOpen=True),
            _policy("cached", "cached", cache={"ttl": "2s"}),
            _policy("dead", "dead", service="nowhere"),
        )
    )
    good = {"authorization": "Bearer good", "x-user": "forged"}

    ok = request(port, "/closed/a?q=1", headers=good)
    assert ok.status == 200
    assert ok.json()["headers"]["X-User"] == ["alice"]  # the service's, not the client's
    assert "X-Other" not in ok.json()["headers"]
    check = auth.checks[-1]
    assert check["method"] == "GET" and check["path"] == "/check/closed/a?q=1"
    assert check["headers"]["authorization"] == "Bearer good"
    assert check["headers"]["x-forwarded-host"] == f"127.0.0.1:{port}"

    denied = request(port, "/closed/a", headers={"authorization": "Bearer bad"})
    assert denied.status == 401 and denied.json()["error"] == "ext_auth_denied"
    assert denied.headers["www-authenticate"] == 'Bearer realm="auth"'

    auth.mode = "down"
    failed = request(port, "/closed/a", headers=good)
    assert failed.status == 403 and failed.json()["error"] == "ext_auth_error"
    assert request(port, "/open/a", headers=good).status == 200  # failOpen
    auth.mode = "slow"
    started = time.monotonic()
    assert request(port, "/closed/a", headers=good).status == 403
    assert time.monotonic() - started < 1.8  # the 500ms timeout, not the service's 2s
    assert request(port, "/dead/a", headers=good).status == 403  # unreachable

    auth.mode = "normal"
    before = len(auth.checks)
    for _ in range(5):
        hit = request(port, "/cached/x", headers=good)
        assert hit.status == 200 and hit.json()["headers"]["X-User"] == ["alice"]
    for _ in range(3):
        assert request(port, "/cached/x", headers={"authorization": "Bearer bad"}).status == 401
    assert len(auth.checks) == before + 2  # one allow and one deny decision, then cached
    assert eventually(
        lambda: (
            request(port, "/cached/x", headers=good).status == 200 and len(auth.checks) > before + 2
        ),
        10.0,
    )  # expired after the ttl
    assert proc.metric("turnout_refusals_total", reason="ext_auth_error") >= 3
