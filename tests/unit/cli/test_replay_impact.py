"""``runbook test --last``: what each planned step would have changed on recorded requests."""

from __future__ import annotations

from typing import Any

from turnout.cli.replay import impact, requests_only


def req(**fields: Any) -> dict[str, Any]:
    return {"type": "request", "route": "default/checkout", "backend": "default/svc", **fields}


ENTRIES = [
    *[req(endpoint="10.0.0.1:80", client="192.0.2.7", consumer="alice") for _ in range(6)],
    *[req(endpoint="10.0.0.2:80", client="198.51.100.1", routing_key="pr-1") for _ in range(4)],
    req(route="default/other", backend="default/alt"),
]


def step(action: str, **params: Any) -> dict[str, Any]:
    return {"name": "s", "action": action, "params": params}


def test_each_action_counts_what_it_would_have_touched() -> None:
    said = {
        "shed": impact(step("shed", route="checkout", percent=50), "default", ENTRIES),
        "block": impact(
            step("block_clients", route="checkout", clients=["192.0.2.0/24"]), "default", ENTRIES
        ),
        "consumers": impact(
            step("block_consumers", route="checkout", consumers=["alice"]), "default", ENTRIES
        ),
        "eject": impact(
            step("eject_endpoint", backend="svc", endpoint="10.0.0.2:80"), "default", ENTRIES
        ),
        "shift": impact(
            step("shift_weight", route="checkout", **{"from": "svc", "to": "alt"}, percent=30),
            "default",
            ENTRIES,
        ),
        "circuit": impact(step("open_circuit", backend="alt"), "default", ENTRIES),
        "pin": impact(step("pin_routing_key", route="checkout", keys=["pr-1"]), "default", ENTRIES),
    }
    assert said == {
        "shed": "~5 of 10 requests of default/checkout answered 503",
        "block": "6 of 10 requests of default/checkout answered 403",
        "consumers": "6 of 10 requests of default/checkout answered 403",
        "eject": "4 of 10 requests to default/svc sent to its other endpoints instead of "
        "10.0.0.2:80",
        "shift": "~3 of 10 requests of default/checkout sent to alt instead of svc",
        "circuit": "1 requests to default/alt answered 503",
        "pin": "4 of 10 requests of default/checkout sent to the baseline",
    }


def test_steps_without_a_traffic_effect_and_skipped_steps() -> None:
    assert impact(step("notify_webhook", url="x"), "default", ENTRIES) == (
        "no direct effect on traffic"
    )
    assert impact({**step("shed", route="r", percent=5), "skip": True}, "default", []) == (
        "nothing (skipped)"
    )
    bad = step("block_clients", route="checkout", clients=["not-an-ip"])
    assert impact(bad, "default", ENTRIES).startswith("cannot tell (")
    assert len(requests_only([*ENTRIES, {"type": "event", "message": "x"}])) == len(ENTRIES)
