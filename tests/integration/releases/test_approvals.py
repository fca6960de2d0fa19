"""Manual gate approvals on a real server through the API and the CLI: the release
holds at its gate with the command to run in its reason, viewers may not approve, an
unknown gate is refused with the gates there are, and the approval is audited."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.releases.helpers import apply, release, state, wait_phase
from turnout.testing.manifests import backend, dump, gateway, route, to

PATH = "/api/v1/namespaces/default/releases/orders-v2"


def test_a_manual_gate_holds_until_approved(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    stable, candidate = echo("orders-v1"), echo("orders-v2")
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
            strategy={"canary": {"steps": [{"setWeight": 50}]}},
            approvals=[{"name": "qa", "type": "confirm-promotion"}],
        ),
    )
    found = wait_phase(proc, "orders-v2", "Progressing")
    for _ in range(100):
        if "approval qa" in found["reason"]:
            break
        found = state(proc, "orders-v2")
    assert "turnout release approve orders-v2 --gate qa" in found["reason"], found
    assert found["weight"] == 50

    code, viewer = proc.api("POST", "/api/v1/tokens", {"name": "watcher", "role": "viewer"})
    assert code == 201, viewer
    code, body = proc.api("POST", f"{PATH}/approve", {}, token=viewer["token"])
    assert code == 403, body
    code, body = proc.api("POST", f"{PATH}/approve", {"gate": "legal"})
    assert code == 409 and "gates: qa" in body["message"], body

    cli = [sys.executable, "-m", "turnout", "release"]
    auth = ["--server", proc.admin, "--token", proc.token]
    out = subprocess.run(
        [*cli, "approve", "orders-v2", "--gate", "qa", "--reason", "signed off", *auth],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "approve orders-v2: done" in out.stdout, out
    assert wait_phase(proc, "orders-v2", "Promoted")["weight"] == 100
    code, body = proc.api("GET", f"{PATH}/history")
    assert code == 200
    assert any(
        r["message"] == "approve qa release default/orders-v2: signed off" for r in body["items"]
    )
