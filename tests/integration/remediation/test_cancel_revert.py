"""Cancelling a run reverts its Mitigations, over real sockets (``turnout serve``, two
workers): an active run (parked on an approval after shedding) is cancelled and the route
serves again at once, not when the lease ends; a finished run's Mitigation still in force
is reverted by a cancel too, and the timeline and the audit log say who did it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.remediation.harness import alert_payload
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.process import TurnoutProcess
from turnout.testing.requests import get

SHED = {"name": "shed", "action": "shed", "params": {"route": "{route}", "percent": 100}}


def runbook(name: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": name.lower()},
        "spec": {
            "match": {"labels": {"alertname": name}},
            "target": "{alertname}",
            "limits": {"maxShedPercent": 100},
            "steps": [{**SHED, "params": {**SHED["params"], "ttl": "1h"}}, *steps],
        },
    }


def fire(gw: TurnoutProcess, name: str, state: str) -> dict[str, Any]:
    labels = {"alertname": name, "route": "checkout"}
    payload = alert_payload(datetime.now(UTC), labels=labels, fingerprint=name)
    assert gw.api("POST", "/api/v1/alerts/alertmanager", payload)[0] == 200

    def reached() -> dict[str, Any] | None:
        items = gw.api("GET", "/api/v1/incidents")[1]["items"]
        mine = [r for r in items if r["runbook"] == "default/" + name.lower()]
        return mine[0] if mine and mine[0]["state"] == state else None

    return wait_until(reached, timeout=20, what=f"the {name} run to be {state}")


def statuses(port: int) -> Counter[int]:
    return Counter(get(port, "/").status for _ in range(16))


def test_cancel_reverts_the_mitigations_of_active_and_finished_runs(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    e = echo("e-0")
    gw = serve(
        dump(gateway(port=port), backend("svc", e.port), route("checkout", [to("svc")])),
        workers=2,
    )
    notify = {
        "name": "ask",
        "action": "shed",
        "params": {"route": "{route}", "percent": 1},
        "approval": {"roles": ["admin"]},
    }
    objs = [runbook("Parked", notify), runbook("Done")]
    assert gw.api("POST", "/api/v1/apply", {"manifests": objs})[0] == 200

    run = fire(gw, "Parked", "waiting_approval")
    wait_until(lambda: statuses(port)[503] == 16, timeout=5, what="the shed everywhere")
    status, body = gw.api("POST", f"/api/v1/incidents/{run['id']}/cancel")
    assert status == 200, body
    assert body["state"] == "cancelled" and body["reverted"] == [f"rem-{run['id']}-0"]
    wait_until(lambda: statuses(port)[200] == 16, timeout=5, what="the revert everywhere")

    run = fire(gw, "Done", "succeeded")
    wait_until(lambda: statuses(port)[503] == 16, timeout=5, what="the second shed")
    status, body = gw.api("POST", f"/api/v1/incidents/{run['id']}/cancel")
    assert status == 200 and body["state"] == "succeeded", body
    detail = gw.api("GET", f"/api/v1/incidents/{run['id']}")[1]
    assert detail["timeline"][-1]["event"] == "reverted"
    assert detail["timeline"][-1]["detail"].startswith(f"rem-{run['id']}-0 by ")
    wait_until(lambda: statuses(port)[200] == 16, timeout=5, what="the second revert")
    # nothing left to revert: a clear refusal
    status, body = gw.api("POST", f"/api/v1/incidents/{run['id']}/cancel")
    assert status == 409 and "no mitigation in force" in body["message"], body
    audit = gw.api("GET", "/api/v1/audit?limit=50")[1]["items"]
    assert sum(a["action"] == "revert" for a in audit) == 2, audit
