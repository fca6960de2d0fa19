"""Flagger-compatible webhooks against a real HTTP server: a closed confirm-promotion
gate holds a healthy release at its last step with the answer in the reason; opening it
promotes; a rollback webhook answering 2xx rolls a release back."""

from __future__ import annotations

import time

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.releases.helpers import apply, release, state, wait_phase
from turnout.testing.manifests import backend, dump, gateway, route, to


def test_confirm_promotion_holds_until_the_webhook_says_yes_and_rollback_rolls_back(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    stable, candidate, gate = echo("orders-v1"), echo("orders-v2"), echo("gate")
    gate.force_status = 403
    proc = serve(
        dump(
            gateway(port=port),
            backend("orders", stable.port),
            backend("orders-v2", candidate.port),
            backend("orders-v3", candidate.port),
            route("shop", [to("orders")]),
        )
    )
    url = f"http://127.0.0.1:{gate.port}/gate"
    apply(
        proc,
        release(
            "orders-v2",
            "orders",
            "orders-v2",
            strategy={"canary": {"steps": [{"setWeight": 20}]}},
            webhooks=[{"name": "qa", "type": "confirm-promotion", "url": url}],
        ),
    )
    deadline = time.monotonic() + 15
    found = state(proc, "orders-v2")
    while "waiting for confirm-promotion" not in found.get("reason", ""):
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
        found = state(proc, "orders-v2")
    assert found["phase"] == "Progressing" and found["weight"] == 20
    assert "webhook qa (confirm-promotion) answered 403" in found["reason"]
    gate.force_status = 0  # the echo answers 200
    assert wait_phase(proc, "orders-v2", "Promoted")["weight"] == 100
    assert any(path.startswith("/gate") for path in gate.received)

    gate.force_status = 200
    apply(
        proc,
        release(
            "orders-v3",
            "orders-v2",
            "orders-v3",
            strategy={"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
            webhooks=[{"name": "pager", "type": "rollback", "url": url}],
        ),
    )
    found = wait_phase(proc, "orders-v3", "Degraded")
    assert (
        found["weight"] == 0
        and "rolled back: webhook pager (rollback) answered 200" in found["reason"]
    )
