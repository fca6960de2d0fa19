"""Environment release queues on a real server: one live release per Backend in
priority order (the data plane serves the running one's candidate only), the queue's
pause and resume, a restart in the middle of the queue, a blackout holding a queued
release and the audited bypass, all through the admin API and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.releases.helpers import Users, apply, release, state, wait_phase
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess

RELEASES = "/api/v1/namespaces/default/releases"
STEPS = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}


def environment(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": name},
        "spec": {"namespaces": ["default"], **spec},
    }


def _shop(serve: ServeFactory, port: int, echo: EchoFactory) -> TurnoutProcess:
    v1, v2, v3 = echo("orders-v1"), echo("orders-v2"), echo("orders-v3")
    return serve(
        dump(
            gateway(port=port),
            backend("orders", v1.port),
            backend("orders-v2", v2.port),
            backend("orders-v3", v3.port),
            route("shop", [to("orders")]),
        ),
        workers=2,
    )


def wait_reason(
    proc: TurnoutProcess, name: str, text: str, timeout: float = 20.0
) -> dict[str, Any]:
    """The state once its reason says ``text`` (a queued release looks again each second)."""
    deadline = time.monotonic() + timeout
    found = state(proc, name)
    while text not in found.get("reason", ""):
        assert time.monotonic() < deadline, (text, found)
        time.sleep(0.1)
        found = state(proc, name)
    return found


def _queue(proc: TurnoutProcess, env: str = "prod") -> dict[str, Any]:
    code, body = proc.api("GET", f"/api/v1/release-queues/{env}")
    assert code == 200, body
    return dict(body)


def test_priority_order_pause_resume_and_a_restart_mid_queue(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    proc = _shop(serve, port, echo)
    apply(proc, environment("prod"))
    apply(
        proc,
        release("slow", "orders", "orders-v2", strategy=STEPS, split={"by": "random"}),
        release(
            "urgent", "orders", "orders-v3", strategy=STEPS, split={"by": "random"}, priority=5
        ),
    )
    wait_phase(proc, "urgent", "Paused")
    waiting = wait_reason(proc, "slow", "default/urgent is Paused on backend orders")
    assert waiting["phase"] == "Pending"
    view = _queue(proc)
    assert [a["name"] for a in view["active"]] == ["urgent"]
    assert [(q["position"], q["name"]) for q in view["queued"]] == [(1, "slow")]
    users = Users(port)
    for _ in range(60):
        users.one()
    assert set(users.pods) == {"orders-v1", "orders-v3"}  # never the queued candidate

    code, body = proc.api("POST", "/api/v1/release-queues/prod/pause", {"reason": "freeze"})
    assert code == 200 and body["changed"] and body["paused"]["reason"] == "freeze", body
    code, body = proc.api("POST", f"{RELEASES}/urgent/abort", {"reason": "rethink"})
    assert code == 200, body
    proc.stop()
    proc.start()  # mid-queue: the order, the pause and the states come from the store
    assert state(proc, "slow")["phase"] == "Pending"
    found = wait_reason(proc, "slow", "queue paused by")
    assert found["phase"] == "Pending" and "freeze" in found["reason"]

    # re-applying the Environment keeps the pause; resuming starts the queued release
    apply(proc, environment("prod"))
    assert _queue(proc)["paused"] is not None
    cli = [sys.executable, "-m", "turnout", "release"]
    auth = ["--server", proc.admin, "--token", proc.token]
    out = subprocess.run(
        [*cli, "queue", "prod", "--resume", *auth], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and "resume prod: done" in out.stdout, out
    wait_phase(proc, "slow", "Paused")
    after = Users(port)
    for _ in range(60):
        after.one()
    assert set(after.pods) == {"orders-v1", "orders-v2"}
    out = subprocess.run(
        [*cli, "queue", "-o", "json", *auth], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    (listed,) = json.loads(out.stdout)
    assert [a["name"] for a in listed["active"]] == ["slow"] and listed["queued"] == []


def test_a_blackout_holds_the_queue_and_the_bypass_needs_a_reason(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    proc = _shop(serve, port, echo)
    every_day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    apply(proc, environment("prod", blackouts=[{"name": "freeze", "days": every_day}]))
    apply(proc, release("hotfix", "orders", "orders-v2", strategy=STEPS, split={"by": "random"}))
    found = wait_reason(proc, "hotfix", "queued in prod: blackout 'freeze' until")
    assert found["phase"] == "Pending"
    assert _queue(proc)["blackout"]["name"] == "freeze"
    code, body = proc.api("POST", f"{RELEASES}/hotfix/bypass", {})
    assert code == 400 and "reason" in body["message"], body
    code, body = proc.api("POST", f"{RELEASES}/hotfix/bypass", {"reason": "INC-42 outage"})
    assert code == 200 and body["changed"] and body["state"]["bypass"], body
    started = wait_phase(proc, "hotfix", "Paused")
    assert started["weight"] == 50 and started["bypass"]
    code, body = proc.api("GET", f"{RELEASES}/hotfix/history")
    assert code == 200
    assert any(
        "bypass release default/hotfix: INC-42 outage" in r["message"] for r in body["items"]
    )


def test_promote_to_the_next_environment(serve: ServeFactory, port: int, echo: EchoFactory) -> None:
    proc = _shop(serve, port, echo)
    staging = environment("staging")
    prod = environment("prod")
    prod["spec"]["namespaces"] = ["prod"]
    apply(proc, staging, prod)
    apply(proc, release("orders-v2", "orders", "orders-v2", strategy=STEPS))
    wait_phase(proc, "orders-v2", "Paused")
    body = {"environment": "prod"}
    code, answer = proc.api("POST", f"{RELEASES}/orders-v2/promote-to", body)
    assert code == 409 and "only a Promoted release moves on" in answer["message"], answer
    assert proc.api("POST", f"{RELEASES}/orders-v2/promote", {"reason": "ok"})[0] == 200
    cli = [sys.executable, "-m", "turnout", "release"]
    auth = ["--server", proc.admin, "--token", proc.token]
    out = subprocess.run(
        [*cli, "promote-to", "orders-v2", "prod", *auth],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "release prod/orders-v2 created in prod" in out.stdout, out
    code, copy = proc.api("GET", "/api/v1/namespaces/prod/releases/orders-v2")
    assert code == 200, copy
    assert copy["metadata"]["annotations"]["turnout.dev/promoted-from"] == "default/orders-v2"
    assert copy["spec"]["candidate"] == {"backend": "orders-v2"}
    code, answer = proc.api("POST", f"{RELEASES}/orders-v2/promote-to", body)
    assert code == 409 and "exists already in prod" in answer["message"], answer
    code, answer = proc.api("POST", f"{RELEASES}/orders-v2/promote-to", {"environment": "nope"})
    assert code == 409 and "no Environment named 'nope'" in answer["message"], answer
