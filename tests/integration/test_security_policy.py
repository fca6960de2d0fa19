"""SecurityPolicy through a real gateway process: JWT with a JWKS server we control (key
rotation, outage, unknown kid), API keys, Basic auth, authorization rules, IP rules behind
trusted proxies, CORS, security headers, rate limits per Consumer — and no secret in the
access log or on stderr."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing import TurnoutProcess
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import eventually
from turnout.testing.requests import request

ALL_FIELDS = (
    "time,duration_ms,method,path,host,status,bytes_sent,bytes_received,route,backend,"
    "endpoint,request_id,client,user_agent"
)
ISSUER = "https://idp.example.com"

Response = tuple[int, dict[str, str], Any]


def _request(
    port: int, path: str = "/", headers: dict[str, str] | None = None, method: str = "GET"
) -> Response:
    reply = request(port, path, method=method, headers=headers, timeout=15)
    hdrs: dict[str, str] = {}
    for name, value in reply.response.getheaders():
        key = name.lower()
        hdrs[key] = hdrs[key] + "\n" + value if key in hdrs else value
    is_json = hdrs.get("content-type", "").startswith("application/json")
    return reply.status, hdrs, reply.json() if is_json and reply.body else reply.body


def _security(name: str, targets: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": name},
        "spec": {"targetRefs": targets, **spec},
    }


def _consumer(name: str, *keys: dict[str, Any], groups: list[str] | None = None) -> Any:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Consumer",
        "metadata": {"name": name},
        "spec": {"apiKeys": list(keys), "groups": groups or []},
    }


def _on_route(name: str = "api") -> list[dict[str, Any]]:
    return [{"kind": "HTTPRoute", "name": name}]


def _assert_never_logged(proc: TurnoutProcess, log_file: Path, *secrets: str) -> None:
    proc.stop()
    text = proc.stderr() + (log_file.read_text() if log_file.exists() else "")
    assert text  # something was written (the access log has a line per request)
    for secret in secrets:
        assert secret not in text, "a secret reached the logs"


# -- a JWKS server under the test's control ----------------------------------------------


class Signer:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwk.update(kid=kid, use="sig", alg="RS256")

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": "api", "sub": "alice", "exp": now + 600, **claims}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})


class JWKSServer:
    """Serves ``{"keys": [...]}`` of the published signers; ``hang`` makes it accept and
    never answer (a blackholed endpoint)."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.hang = False
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                if owner.hang:
                    time.sleep(8)
                    return
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.uri = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *signers: Signer) -> None:
        self.keys = [s.jwk for s in signers]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JWKSServer]:
    server = JWKSServer()
    yield server
    server.close()


def _bearer(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def test_jwt_key_rotation_outage_and_unknown_kid(
    serve: ServeFactory, port: int, echo: EchoFactory, jwks_server: JWKSServer, tmp_path: Path
) -> None:
    e = echo("e-0")
    key1, key2, key3 = Signer("key1"), Signer("key2"), Signer("key3")
    jwks_server.publish(key1)
    provider = {
        "name": "idp",
        "issuer": ISSUER,
        "audiences": ["api"],
        "remoteJWKS": {"uri": jwks_server.uri, "cacheDuration": "1s"},
        "claimToHeaders": [{"claim": "sub", "header": "x-user-id"}],
    }
    log_file = tmp_path / "access.log"
    proc = serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            route("api", [to("svc")]),
            _security("jwt", _on_route(), jwt={"providers": [provider]}),
        ),
        access_log=str(log_file),
        args=["--access-log-fields", ALL_FIELDS],
    )
    token1 = key1.token()
    status, _, body = _request(port, "/", _bearer(token1, **{"X-User-Id": "root"}))
    assert status == 200
    assert body["headers"]["X-User-Id"] == ["alice"]  # the forged value is gone

    # No token, a garbage token, a token for another audience: 401, JSON, challenge.
    status, hdrs, body = _request(port)
    assert status == 401 and body["error"] == "unauthorized"
    assert hdrs["www-authenticate"] == 'Bearer realm="turnout"'
    status, hdrs, body = _request(port, "/", _bearer(key1.token(aud="other")))
    assert status == 401 and "audience" in body["message"]
    assert hdrs["www-authenticate"] == 'Bearer realm="turnout", error="invalid_token"'

    # Rotation: key2 is published beside key1, then key1 is withdrawn. No restart.
    jwks_server.publish(key1, key2)
    token2 = key2.token(sub="bob")
    assert eventually(lambda: _request(port, "/", _bearer(token2))[0] == 200, 10.0)
    status, _, body = _request(port, "/", _bearer(token2))
    assert body["headers"]["X-User-Id"] == ["bob"]
    jwks_server.publish(key2)
    assert eventually(lambda: _request(port, "/", _bearer(token1))[0] == 401, 10.0)
    assert _request(port, "/", _bearer(token2))[0] == 200

    # Random kids cannot make the gateway hammer the JWKS endpoint: an unknown kid
    # refetches at most once per 10 s (beside the background refresh).
    fetches = jwks_server.fetches
    for i in range(20):
        forged = jwt.encode(
            {"iss": ISSUER, "aud": "api", "exp": int(time.time()) + 60},
            key3.key,
            algorithm="RS256",
            headers={"kid": f"random-{i}"},
        )
        assert _request(port, "/", _bearer(forged))[0] == 401
    assert jwks_server.fetches - fetches <= 3

    # The JWKS endpoint stops answering: cached keys keep working (stale), and a token
    # whose key is not cached answers 503 within the bounded fetch time.
    jwks_server.hang = True
    time.sleep(1.5)  # the cached set expires; refreshes now time out
    started = time.monotonic()
    assert _request(port, "/", _bearer(token2))[0] == 200
    assert time.monotonic() - started < 3.0  # at most one bounded fetch was waited for
    started = time.monotonic()
    status, hdrs, body = _request(port, "/", _bearer(key3.token()))
    elapsed = time.monotonic() - started
    assert (status, body["error"]) == (503, "jwks_unavailable")
    assert elapsed < 3.0
    assert _request(port, "/", _bearer(token2))[0] == 200
    _assert_never_logged(proc, log_file, token1, token2)
    assert "fetching the JWKS" in proc.stderr()


def test_an_unreachable_jwks_answers_503_in_bounded_time(
    serve: ServeFactory, port: int, echo: EchoFactory, jwks_server: JWKSServer
) -> None:
    e = echo("e-0")
    jwks_server.hang = True  # accepts, never answers
    provider = {"name": "idp", "remoteJWKS": {"uri": jwks_server.uri}}
    serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            route("api", [to("svc")]),
            _security("jwt", _on_route(), jwt={"providers": [provider]}),
        )
    )
    token = Signer("k1").token()
    for _ in range(2):  # the first waits for the (timed out) fetch, the next does not
        started = time.monotonic()
        status, hdrs, body = _request(port, "/", _bearer(token))
        assert time.monotonic() - started < 3.0
        assert (status, body["error"]) == (503, "jwks_unavailable")
        assert hdrs["retry-after"] == "5"
    assert e.requests == 0


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_api_keys_and_basic_auth(
    serve: ServeFactory, port: int, echo: EchoFactory, tmp_path: Path
) -> None:
    e = echo("e-0")
    mobile, mobile_next, partner = (
        "mobile-key-0001-abcdef",
        "mobile-key-0002-abcdef",
        "partner-key-abcdef01",
    )
    expired = "mobile-key-0000-expired"
    hashed = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=10)).decode()
    users = f"# users\nalice:{hashed}\n"
    log_file = tmp_path / "access.log"
    proc = serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            route("api", [to("svc")]),
            _security(
                "keys",
                _on_route(),
                apiKeyAuth={
                    "extractFrom": [{"header": "x-api-key"}, {"query": "api_key"}],
                    "forwardConsumerHeader": "x-consumer",
                },
                basicAuth={"users": {"inline": users}},
            ),
            _consumer(
                "mobile-app",
                {"key": mobile},
                {"key": mobile_next},
                {"key": expired, "expiresAt": "2020-01-01T00:00:00Z"},
            ),
            _consumer("partner", {"key": partner}),
        ),
        access_log=str(log_file),
        args=["--access-log-fields", ALL_FIELDS],
    )
    for key in (mobile, mobile_next):  # rotation: both keys work
        status, _, body = _request(port, "/", {"x-api-key": key, "X-Consumer": "partner"})
        assert status == 200
        assert body["headers"]["X-Consumer"] == ["mobile-app"]  # forged copy removed
    status, _, body = _request(port, f"/items?a=1&api_key={partner}&b=2")
    assert status == 200
    assert body["headers"]["X-Consumer"] == ["partner"]
    assert body["path"] == "/items?a=1&b=2"  # the key is not forwarded
    for headers in ({"x-api-key": expired}, {"x-api-key": "not-a-key-0123456789"}):
        status, hdrs, body = _request(port, "/", headers)
        assert status == 401 and body["error"] == "unauthorized"
        assert hdrs["www-authenticate"] == 'ApiKey realm="turnout"'
    status, hdrs, body = _request(port)
    assert status == 401 and body["request_id"]
    assert hdrs["www-authenticate"] == 'ApiKey realm="turnout"\nBasic realm="turnout"'

    status, _, body = _request(port, "/", _basic("alice", "wonderland"))
    assert status == 200 and body["headers"]["X-Consumer"] == ["alice"]
    assert _request(port, "/", _basic("alice", "wonderland"))[0] == 200  # cached now
    status, hdrs, _ = _request(port, "/", _basic("alice", "Wonderland"))
    assert status == 401 and hdrs["www-authenticate"] == 'Basic realm="turnout"'
    assert _request(port, "/", _basic("mallory", "wonderland"))[0] == 401
    _assert_never_logged(
        proc,
        log_file,
        mobile,
        mobile_next,
        partner,
        "wonderland",
        "Wonderland",
        _basic("alice", "wonderland")["Authorization"].split()[1],
    )


def test_authorization_rules(
    serve: ServeFactory, port: int, echo: EchoFactory, jwks_server: JWKSServer
) -> None:
    e = echo("e-0")
    signer = Signer("k1")
    jwks_server.publish(signer)
    serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            route("api", [to("svc")]),
            _security(
                "authz",
                _on_route(),
                jwt={
                    "providers": [
                        {
                            "name": "idp",
                            "remoteJWKS": {"uri": jwks_server.uri},
                            "audiences": ["api"],
                        }
                    ]
                },
                apiKeyAuth={},
                authorization={
                    "defaultAction": "Deny",
                    "rules": [
                        {"action": "Allow", "principal": {"consumers": ["mobile-app"]}},
                        {"action": "Allow", "principal": {"groups": ["admins"]}},
                        {
                            "action": "Allow",
                            "principal": {
                                "jwt": {"claims": [{"name": "roles", "values": ["ops"]}]}
                            },
                        },
                    ],
                },
            ),
            _consumer("mobile-app", {"key": "mobile-key-0001-abcdef"}),
            _consumer("partner", {"key": "partner-key-abcdef01"}),
            _consumer("alice", groups=["admins"]),
        )
    )
    assert _request(port, "/", {"x-api-key": "mobile-key-0001-abcdef"})[0] == 200
    status, hdrs, body = _request(port, "/", {"x-api-key": "partner-key-abcdef01"})
    assert (status, body["error"]) == (403, "forbidden")
    assert "www-authenticate" not in hdrs
    assert _request(port, "/", _bearer(signer.token(sub="alice")))[0] == 200  # a group
    assert _request(port, "/", _bearer(signer.token(sub="bob", roles=["ops"])))[0] == 200
    assert _request(port, "/", _bearer(signer.token(sub="carol", roles=["dev"])))[0] == 403


def test_ip_rules_behind_trusted_proxies_and_policy_precedence(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    e = echo("e-0")
    serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            route("api", [to("svc", "/api")]),
            route("admin", [to("svc", "/admin")]),
            # The Gateway's policy: security headers for every route...
            _security(
                "site",
                [{"kind": "Gateway", "name": "gw"}],
                responseHeaders={"frameOptions": "DENY", "contentTypeOptions": True},
            ),
            # ...but a route's own policy replaces it entirely.
            _security(
                "api-ips",
                _on_route("api"),
                ipRules={"allow": ["127.0.0.0/8"], "deny": ["127.0.0.2/32"]},
                clientIPDetection={"xForwardedFor": {"numTrustedHops": 1}},
            ),
        )
    )
    assert _request(port, "/api")[0] == 200  # the socket peer, 127.0.0.1
    assert _request(port, "/api", {"X-Forwarded-For": "10.1.2.3, 127.0.0.5"})[0] == 200
    status, hdrs, body = _request(port, "/api", {"X-Forwarded-For": "127.0.0.2"})
    assert (status, body["error"]) == (403, "forbidden")
    assert "www-authenticate" not in hdrs
    assert _request(port, "/api", {"X-Forwarded-For": "10.1.2.3"})[0] == 403
    # The client's own entries (left of the trusted hop) are not believed.
    assert _request(port, "/api", {"X-Forwarded-For": "127.0.0.1, 10.1.2.3"})[0] == 403
    status, hdrs, _ = _request(port, "/api")
    assert "x-frame-options" not in hdrs
    status, hdrs, _ = _request(port, "/admin", {"X-Forwarded-For": "127.0.0.2"})
    assert status == 200
    assert hdrs["x-frame-options"] == "DENY" and hdrs["x-content-type-options"] == "nosniff"


def test_cors_and_security_headers(serve: ServeFactory, port: int, echo: EchoFactory) -> None:
    e = echo("e-0")
    key = "browser-key-0123456789"
    serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            route("api", [to("svc")]),
            _security(
                "cors",
                _on_route(),
                apiKeyAuth={},
                cors={
                    "allowOrigins": ["https://*.example.com", "https://app.example.org"],
                    "allowMethods": ["GET", "POST"],
                    "allowHeaders": ["content-type", "x-api-key"],
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
            _consumer("web", {"key": key}),
        )
    )
    before = e.requests
    preflight = {
        "Origin": "https://shop.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }
    status, hdrs, body = _request(port, "/orders", preflight, method="OPTIONS")
    assert status == 204 and body == b""
    assert hdrs["access-control-allow-origin"] == "https://shop.example.com"
    assert hdrs["access-control-allow-methods"] == "GET, POST"
    assert hdrs["access-control-allow-headers"] == "content-type, x-api-key"
    assert hdrs["access-control-allow-credentials"] == "true"
    assert hdrs["access-control-max-age"] == "600"
    evil = {**preflight, "Origin": "https://evil.example.net"}
    status, hdrs, _ = _request(port, "/orders", evil, method="OPTIONS")
    assert status == 204 and not any(h.startswith("access-control-") for h in hdrs)
    assert e.requests == before  # preflights never reach the upstream

    origin = {"Origin": "https://app.example.org"}
    status, hdrs, _ = _request(port, "/orders", {**origin, "x-api-key": key})
    assert status == 200
    assert hdrs["access-control-allow-origin"] == "https://app.example.org"
    assert hdrs["access-control-allow-credentials"] == "true"
    assert hdrs["access-control-expose-headers"] == "x-request-id"
    assert "Origin" in hdrs["vary"]
    assert hdrs["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert hdrs["x-frame-options"] == "DENY" and hdrs["x-content-type-options"] == "nosniff"
    # A refusal is readable by the page that made it.
    status, hdrs, body = _request(port, "/orders", origin)
    assert status == 401 and body["error"] == "unauthorized"
    assert hdrs["access-control-allow-origin"] == "https://app.example.org"
    status, hdrs, _ = _request(port, "/orders", {"Origin": "https://evil.net", "x-api-key": key})
    assert status == 200 and not any(h.startswith("access-control-") for h in hdrs)
    assert hdrs["strict-transport-security"]


def test_rate_limits_count_each_consumer(serve: ServeFactory, port: int, echo: EchoFactory) -> None:
    e = echo("e-0")
    keys = {"mobile-app": "mobile-key-0001-abcdef", "partner": "partner-key-abcdef01"}
    limits = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "per-consumer"},
        "spec": {
            "targetRefs": _on_route(),
            "rateLimit": {
                "rules": [{"key": {"type": "Consumer"}, "limit": {"requests": 2, "unit": "Minute"}}]
            },
        },
    }
    serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            route("api", [to("svc")]),
            _security("keys", _on_route(), apiKeyAuth={}),
            limits,
            *(_consumer(name, {"key": key}) for name, key in keys.items()),
        )
    )
    for key in keys.values():
        statuses = [_request(port, "/", {"x-api-key": key})[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
    # Requests refused by authentication are not counted against anyone.
    assert {_request(port)[0] for _ in range(5)} == {401}
