"""Release trains (``dependsOn``) on a real server: a train promotes its services in
order (a release starts only after the one it depends on is Promoted), and when one
fails its analysis on real traffic, the release depending on it is aborted."""

from __future__ import annotations

from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.releases.helpers import Users, apply, release, state, wait_phase
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess, free_port

QUICK = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}}


def _shop(serve: ServeFactory, port: int, echo: EchoFactory, broken: bool) -> TurnoutProcess:
    o1, o2, p1, p2 = echo("orders-v1"), echo("orders-v2"), echo("pay-v1"), echo("pay-v2")
    pay_v2 = f"127.0.0.1:{free_port() if broken else p2.port}"  # broken: nothing listens
    return serve(
        dump(
            gateway(port=port),
            backend("orders", o1.port),
            backend("orders-v2", o2.port),
            backend("payments", p1.port),
            {
                "apiVersion": "turnout.dev/v1alpha1",
                "kind": "Backend",
                "metadata": {"name": "payments-v2"},
                "spec": {"endpoints": [{"address": pay_v2}]},
            },
            route("shop", [to("payments", "/pay"), to("orders", "/")]),
        )
    )


def _history(proc: TurnoutProcess, name: str) -> list[dict[str, Any]]:
    code, body = proc.api("GET", f"/api/v1/namespaces/default/releases/{name}/history")
    assert code == 200, body
    return list(body["items"])


def test_a_train_promotes_in_order(serve: ServeFactory, port: int, echo: EchoFactory) -> None:
    proc = _shop(serve, port, echo, broken=False)
    apply(
        proc,
        release("orders-v2", "orders", "orders-v2", strategy=QUICK, dependsOn=["payments-v2"]),
        release("payments-v2", "payments", "payments-v2", strategy=QUICK),
    )
    wait_phase(proc, "payments-v2", "Promoted")
    wait_phase(proc, "orders-v2", "Promoted")
    promoted = min(
        r["revision"] for r in _history(proc, "payments-v2") if "promoted" in r["message"]
    )
    moved = [r["revision"] for r in _history(proc, "orders-v2") if "setWeight" in r["message"]]
    assert moved and min(moved) > promoted  # orders moved traffic only after payments
    waited = [r for r in _history(proc, "orders-v2") if "waiting for release" in r["message"]]
    assert waited, "orders-v2 never waited for payments-v2"


def test_a_failing_release_aborts_the_ones_depending_on_it(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    proc = _shop(serve, port, echo, broken=True)
    apply(
        proc,
        release(
            "payments-v2",
            "payments",
            "payments-v2",
            strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
            split={"by": "random"},
            analysis={"minSamples": 10},
        ),
        release("orders-v2", "orders", "orders-v2", strategy=QUICK, dependsOn=["payments-v2"]),
    )
    wait_phase(proc, "payments-v2", "Paused")
    users = Users(port, "/pay")
    for _ in range(400):  # half of them reach a candidate nothing listens on
        users.one()
        if users.failed >= 30 and state(proc, "payments-v2")["phase"] == "Degraded":
            break
    failed = wait_phase(proc, "payments-v2", "Degraded")
    assert "analysis failed" in failed["reason"], failed
    aborted = wait_phase(proc, "orders-v2", "Aborted")
    assert (
        "release default/payments-v2, which this one depends on, is Degraded" in (aborted["reason"])
    )
    assert aborted["weight"] == 0
