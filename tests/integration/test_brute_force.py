"""SecurityPolicy bruteForce through a real gateway with two workers: failed API keys from
one address are counted host-wide, the failure that reaches maxFailures bans the
address (403 JSON with Retry-After, even with a good key), the ban shows in the
metrics and is logged without the credential."""

from __future__ import annotations

from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import request

GOOD = "a-good-key-for-the-brute-force-test"
BAD = "a-wrong-key-never-to-be-logged-0123"


def _objects() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "turnout.dev/v1alpha1",
            "kind": "SecurityPolicy",
            "metadata": {"name": "keys"},
            "spec": {
                "targetRefs": [{"kind": "HTTPRoute", "name": "api"}],
                "apiKeyAuth": {"extractFrom": [{"header": "x-api-key"}]},
                "bruteForce": {"maxFailures": 3, "window": "1m", "banFor": "10m"},
            },
        },
        {
            "apiVersion": "turnout.dev/v1alpha1",
            "kind": "Consumer",
            "metadata": {"name": "app"},
            "spec": {"apiKeys": [{"key": GOOD}]},
        },
    ]


def test_an_address_is_banned_after_max_failures_across_workers(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    e = echo("bf-0")
    proc = serve(
        dump(gateway(port=port), backend("svc", e.port), route("api", [to("svc")]), *_objects()),
        workers=2,
    )
    assert request(port, "/", headers={"x-api-key": GOOD}).status == 200
    # no credential at all is not a failed guess (a browser's first request is one)
    assert [request(port, "/").status for _ in range(4)] == [401] * 4
    # a new connection per request: the kernel spreads them over both workers
    statuses = [request(port, "/", headers={"x-api-key": BAD}).status for _ in range(3)]
    assert statuses == [401, 401, 401]
    for key in (BAD, GOOD):
        reply = request(port, "/", headers={"x-api-key": key})
        assert reply.status == 403
        assert reply.json()["error"] == "banned"
        assert 590 <= int(reply.headers["retry-after"]) <= 600
    wait_until(
        lambda: proc.metric("turnout_auth_bans_total", policy="default/keys") == 1,
        10.0,
        "the ban to show in the metrics",
    )
    wait_until(lambda: "banned client 127.0.0.1" in proc.stderr(), 10.0, "the ban's log line")
    assert BAD not in proc.stderr()


def test_a_basic_user_is_locked_from_every_address_with_by_consumer(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    import base64

    import bcrypt

    hashed = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4)).decode()
    policy = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": "basic"},
        "spec": {
            "targetRefs": [{"kind": "HTTPRoute", "name": "api"}],
            "basicAuth": {"users": {"inline": f"alice:{hashed}\nbob:{hashed}\n"}},
            # a high address limit: only the per-user counter can lock here
            "bruteForce": {"maxFailures": 3, "window": "1m", "banFor": "10m", "byConsumer": True},
            "clientIPDetection": {"xForwardedFor": {"numTrustedHops": 1}},
        },
    }
    e = echo("bf-1")
    proc = serve(
        dump(gateway(port=port), backend("svc", e.port), route("api", [to("svc")]), policy),
        workers=2,
    )

    def basic(user: str, password: str, address: str) -> int:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers = {"authorization": f"Basic {token}", "x-forwarded-for": address}
        return request(port, "/", headers=headers).status

    assert basic("alice", "wonderland", "10.0.0.1") == 200
    # three wrong passwords for alice from three addresses: no address reaches 3 ...
    assert [basic("alice", "guess", f"10.0.1.{i}") for i in range(3)] == [401] * 3
    # ... but alice is locked, from everywhere, even with her password
    reply = request(
        port,
        "/",
        headers={
            "authorization": "Basic " + base64.b64encode(b"alice:wonderland").decode(),
            "x-forwarded-for": "10.0.2.1",
        },
    )
    assert reply.status == 403 and reply.json()["error"] == "banned"
    assert "for this user" in reply.json()["message"]
    assert basic("bob", "wonderland", "10.0.1.0") == 200  # others are not
    # an unknown user name is not counted (guessed names cannot fill the table)
    assert [basic("mallory", "x", f"10.0.3.{i}") for i in range(4)] == [401] * 4
    wait_until(
        lambda: proc.metric("turnout_auth_consumer_bans_total", policy="default/basic") == 1,
        10.0,
        "the lockout in the metrics",
    )
    wait_until(lambda: "locked user alice" in proc.stderr(), 10.0, "the lockout's log line")
    assert "guess" not in proc.stderr()
