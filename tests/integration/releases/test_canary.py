"""Canary releases over real sockets: a real ``turnout serve`` (two workers), real echo
upstreams, the Release applied through the admin API and run by the reconciler on the
gateway's own counters."""

from __future__ import annotations

import time

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.releases.helpers import Users, apply, release, state, wait_phase
from turnout.testing.manifests import backend, dump, gateway, route, to

STEPS = [
    {"setWeight": 20},
    {"analysis": {"duration": "60s"}},
    {"setWeight": 60},
    {"analysis": {"duration": "60s"}},
]


def test_a_failing_canary_is_aborted_and_every_worker_returns_to_stable(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    stable, candidate = echo("orders-v1"), echo("orders-v2")
    candidate.force_status = 503
    proc = serve(
        dump(
            gateway(port=port),
            backend("orders", stable.port),
            backend("orders-v2", candidate.port),
            route("shop", [to("orders")]),
        ),
        workers=2,
    )
    apply(
        proc,
        release(
            "orders-v2",
            "orders",
            "orders-v2",
            strategy={"canary": {"steps": STEPS}},
            analysis={"minSamples": 20},
        ),
    )
    users = Users(port)
    deadline = time.monotonic() + 30
    found = state(proc, "orders-v2")
    sent = 0
    while found["phase"] != "Degraded":
        assert time.monotonic() < deadline, found
        for _ in range(20):
            users.one()
        sent += 20
        found = state(proc, "orders-v2")
    # The bound: the test fails at its minimum sample; what users saw on top of it is
    # the reporting lag (workers report once a second) and is measured in bench/.
    print(f"\nfailed user requests before the abort: {users.failed} of {sent}")
    assert found["weight"] == 0
    assert "analysis failed" in found["reason"] and "exceeds tolerance" in found["reason"]
    assert users.failed >= 20
    # every worker follows: a run of requests (spread over both workers) all on stable
    after = Users(port)
    for _ in range(200):
        after.one()
    assert after.failed == 0 and set(after.pods) == {"orders-v1"}
    code, body = proc.api("GET", "/api/v1/namespaces/default/releases/orders-v2")
    assert code == 200
    ready = {c["type"]: c for c in body["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "Degraded"


def test_a_healthy_canary_is_promoted_and_users_stay_on_their_version(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    stable, candidate = echo("orders-v1"), echo("orders-v2")
    proc = serve(
        dump(
            gateway(port=port),
            backend("orders", stable.port),
            backend("orders-v2", candidate.port),
            route("shop", [to("orders")]),
        ),
        workers=2,
    )
    apply(
        proc,
        release(
            "orders-v2",
            "orders",
            "orders-v2",
            strategy={"canary": {"steps": STEPS}},
            analysis={"minSamples": 30, "successRate": {"tolerance": 0.1}},
            split={"by": "header", "name": "x-user"},
        ),
    )
    users = Users(port)
    seen: dict[str, list[str]] = {}
    deadline = time.monotonic() + 40
    found = state(proc, "orders-v2")
    while found["phase"] != "Promoted":
        assert time.monotonic() < deadline, found
        assert found["phase"] in ("Pending", "Progressing"), found
        for i in range(40):
            user = f"user-{i}"
            _, pod = users.one({"x-user": user})
            seen.setdefault(user, []).append(pod)
        found = state(proc, "orders-v2")
    assert users.failed == 0
    assert "every step passed" in found["reason"]
    # sticky: a user once on the candidate never went back to stable as the weight grew
    for user, pods in seen.items():
        if "orders-v2" in pods:
            first = pods.index("orders-v2")
            assert set(pods[first:]) == {"orders-v2"}, (user, pods)
    assert any("orders-v2" in pods for pods in seen.values())
    # promoted: everyone on the candidate
    after = Users(port)
    for _ in range(50):
        after.one({"x-user": "someone"})
    assert set(after.pods) == {"orders-v2"}


def test_low_traffic_pauses_with_a_clear_reason(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    stable, candidate = echo("orders-v1"), echo("orders-v2")
    candidate.force_status = 503  # failing, but too little traffic to say so
    proc = serve(
        dump(
            gateway(port=port),
            backend("orders", stable.port),
            backend("orders-v2", candidate.port),
            route("shop", [to("orders")]),
        )
    )
    apply(
        proc,
        release(
            "orders-v2",
            "orders",
            "orders-v2",
            strategy={"canary": {"steps": [{"setWeight": 50}, {"analysis": {"duration": "3s"}}]}},
            analysis={"minSamples": 1000},
        ),
    )
    users = Users(port)
    for _ in range(10):
        users.one()
    found = wait_phase(proc, "orders-v2", "Paused", "Degraded")
    assert found["phase"] == "Paused" and found["weight"] == 50, found
    assert "inconclusive after 3s" in found["reason"]
    assert "low traffic" in found["reason"] and "< minSamples 1000" in found["reason"]
