"""Release splits keyed by who a SecurityPolicy authenticated, on a real server: by the
Consumer (API keys) and by a JWT claim (tokens signed by a JWKS server the test runs).
Each Consumer, and each organisation claim, stays on one version while both versions
get traffic."""

from __future__ import annotations

from collections import defaultdict

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.releases.helpers import apply, release, wait_phase
from tests.integration.test_security_policy import ISSUER, JWKSServer, Signer
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.requests import get

STEPS = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}


def _policy(name: str, route_name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": name},
        "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": route_name}], **spec},
    }


def _consumer(i: int) -> dict[str, object]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Consumer",
        "metadata": {"name": f"app-{i}"},
        "spec": {"apiKeys": [{"key": f"key-of-app-{i}-0123456789abcdef"}]},
    }


def test_consumer_and_jwt_claim_splits(serve: ServeFactory, port: int, echo: EchoFactory) -> None:
    o1, o2, p1, p2 = echo("orders-v1"), echo("orders-v2"), echo("pay-v1"), echo("pay-v2")
    signer, jwks = Signer("k1"), JWKSServer()
    jwks.publish(signer)
    provider = {
        "name": "idp",
        "issuer": ISSUER,
        "audiences": ["api"],
        "remoteJWKS": {"uri": jwks.uri},
    }
    try:
        proc = serve(
            dump(
                gateway(port=port),
                backend("orders", o1.port),
                backend("orders-v2", o2.port),
                backend("payments", p1.port),
                backend("payments-v2", p2.port),
                route("orders-api", [to("orders", "/orders")]),
                route("pay-api", [to("payments", "/pay")]),
                _policy(
                    "keys", "orders-api", apiKeyAuth={"extractFrom": [{"header": "x-api-key"}]}
                ),
                _policy("tokens", "pay-api", jwt={"providers": [provider]}),
                *[_consumer(i) for i in range(24)],
            )
        )
        apply(
            proc,
            release("orders-v2", "orders", "orders-v2", strategy=STEPS, split={"by": "consumer"}),
            release(
                "payments-v2",
                "payments",
                "payments-v2",
                strategy=STEPS,
                split={"by": "jwtClaim", "name": "org.id"},
            ),
        )
        wait_phase(proc, "orders-v2", "Paused")
        wait_phase(proc, "payments-v2", "Paused")

        seen: dict[int, set[str]] = defaultdict(set)
        for _ in range(3):
            for i in range(24):
                reply = get(port, "/orders", {"x-api-key": f"key-of-app-{i}-0123456789abcdef"})
                assert reply.status == 200, reply.status
                seen[i].add(reply.json()["pod"])
        assert all(len(pods) == 1 for pods in seen.values()), seen  # sticky per Consumer
        assert set().union(*seen.values()) == {"orders-v1", "orders-v2"}

        by_org: dict[str, set[str]] = defaultdict(set)
        for user in range(48):
            org = f"org-{user % 12}"
            token = signer.token(sub=f"user-{user}", org={"id": org})
            reply = get(port, "/pay", {"authorization": f"Bearer {token}"})
            assert reply.status == 200, reply.status
            by_org[org].add(reply.json()["pod"])
        assert all(len(pods) == 1 for pods in by_org.values()), by_org  # sticky per org
        assert set().union(*by_org.values()) == {"pay-v1", "pay-v2"}
    finally:
        jwks.close()
