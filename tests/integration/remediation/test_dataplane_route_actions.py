"""The route-side leased actions over real sockets (``turnout serve``, two workers, real
echo backends, alerts posted to the intake): ``block_consumers`` refuses an authenticated
Consumer, ``tighten_rate_limit`` cuts the route's TrafficPolicy limit, and
``pin_routing_key`` sends a routing key's requests to the baseline instead of its
Sandbox override — each in every worker, each reverting by itself when its lease ends."""

from __future__ import annotations

from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.remediation.test_dataplane_workers import apply, fire, runbook
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.process import TurnoutProcess
from turnout.testing.requests import get

LEASE = "5s"
KEYS = {"alice": "alice-key-0001-abcdef", "mallory": "mallory-key-0001-abcdef"}


def manifest(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def as_(who: str, port: int, **headers: str) -> int:
    return get(port, "/", {"x-api-key": KEYS[who], **headers}).status


def settled(gw: TurnoutProcess) -> bool:
    """Every worker runs the latest stored revision."""
    status = gw.status()
    latest = int(status["revision"])
    return bool(status["workers"]) and all(w["revision"] >= latest for w in status["workers"])


def test_block_consumers_tighten_rate_limit_and_pin_key_in_every_worker(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    base, sandbox = echo("base-0"), echo("sandbox-0")
    on_api = [{"kind": "HTTPRoute", "name": "checkout"}]  # the route label fire() sends
    limit = {"key": {"type": "Consumer"}, "limit": {"requests": 100, "unit": "Minute"}}
    gw = serve(
        dump(
            gateway(port=port),
            backend("svc", base.port),
            route("checkout", [to("svc")]),
            manifest("SecurityPolicy", "keys", targetRefs=on_api, apiKeyAuth={}),
            manifest("TrafficPolicy", "limits", targetRefs=on_api, rateLimit={"rules": [limit]}),
            *(manifest("Consumer", n, apiKeys=[{"key": k}]) for n, k in KEYS.items()),
            manifest(
                "Sandbox",
                "pr-1",
                routingKey="pr-1",
                overrides=[
                    {"backend": "svc", "endpoints": [{"address": f"127.0.0.1:{sandbox.port}"}]}
                ],
            ),
        ),
        workers=2,
    )
    assert len(gw.worker_pids()) == 2
    params = {"route": "{route}", "ttl": LEASE}
    apply(
        gw,
        runbook(
            "BlockMallory",
            {
                "name": "block",
                "action": "block_consumers",
                "params": {**params, "consumers": ["mallory"]},
            },
        ),
        runbook(
            "Tighten",
            {"name": "tighten", "action": "tighten_rate_limit", "params": {**params, "percent": 2}},
        ),
        runbook(
            "PinIt",
            {"name": "pin", "action": "pin_routing_key", "params": {**params, "keys": ["pr-1"]}},
        ),
    )
    assert as_("mallory", port) == 200

    # block_consumers: mallory is refused after authentication, alice is not
    fire(gw, "BlockMallory")
    wait_until(
        lambda: all(as_("mallory", port) == 403 for _ in range(12)), 5, "the block everywhere"
    )
    reply = get(port, "/", {"x-api-key": KEYS["mallory"]})
    assert reply.json()["error"] == "mitigation_blocked"
    assert as_("alice", port) == 200
    wait_until(lambda: as_("mallory", port) == 200, 20, "the block's lease to end")
    wait_until(lambda: all(as_("mallory", port) == 200 for _ in range(12)), 5, "everywhere")

    # tighten_rate_limit: 100/min cut to 2 % = 2/min (counters of its own), then back
    fire(gw, "Tighten")
    wait_until(lambda: settled(gw) and as_("alice", port) == 429, 5, "the tightened limit")
    assert as_("alice", port) == 429
    wait_until(lambda: settled(gw) and as_("alice", port) == 200, 20, "the limit's lease to end")

    # pin_routing_key: the key's requests go to the baseline, not the sandbox
    key = {"x-turnout-routing-key": "pr-1"}
    before = sandbox.requests
    assert as_("alice", port, **key) == 200 and sandbox.requests == before + 1
    fire(gw, "PinIt")

    def pinned() -> bool:
        seen = sandbox.requests
        ok = all(as_("alice", port, **key) == 200 for _ in range(12))
        return ok and sandbox.requests == seen

    wait_until(pinned, 5, "the pin everywhere")
    wait_until(lambda: not pinned(), 20, "the pin's lease to end")
    wait_until(
        lambda: gw.api("GET", "/api/v1/namespaces/default/mitigations")[1]["items"] == [],
        10,
        "the expiry reconciler to delete every Mitigation",
    )
