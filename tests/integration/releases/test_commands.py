"""Release commands through the admin API on a real server: abort sends every request to
stable, retry starts over, pause/resume, the emergency bypass needs a reason, commands
are idempotent and audited; a server restart mid-release resumes at the same step."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.releases.helpers import Users, apply, release, state, wait_phase
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess

PATH = "/api/v1/namespaces/default/releases/orders-v2"


def _shop(serve: ServeFactory, port: int, echo: EchoFactory) -> TurnoutProcess:
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
            strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
            split={"by": "random"},
        ),
    )
    return proc


def test_abort_retry_pause_resume_and_the_bypass(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    proc = _shop(serve, port, echo)
    found = wait_phase(proc, "orders-v2", "Paused")  # setWeight 50, then an untimed pause
    assert found["weight"] == 50 and found["hold"] == "step"
    users = Users(port)
    for _ in range(60):
        users.one()
    assert set(users.pods) == {"orders-v1", "orders-v2"}
    # the Argo Rollouts web-provider view: per-version numbers (workers report each second)
    deadline = time.monotonic() + 10
    while True:
        code, seen = proc.api("GET", f"{PATH}/measurements")
        assert code == 200, seen
        counted = seen["stable"]["requests"] + seen["candidate"]["requests"]
        if counted >= 60:
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert seen["candidate"]["requests"] == users.pods["orders-v2"]
    assert seen["candidate"]["successRate"] == 1.0 and seen["candidate"]["backend"] == (
        "default/orders-v2"
    )
    assert seen["verdict"] in ("pass", "inconclusive") and seen["state"]["phase"] == "Paused"

    code, viewer = proc.api("POST", "/api/v1/tokens", {"name": "watcher", "role": "viewer"})
    assert code == 201, viewer
    code, body = proc.api("POST", f"{PATH}/abort", {"reason": "no"}, token=viewer["token"])
    assert code == 403, body  # commands need the editor role
    assert proc.api("GET", f"{PATH}/state", token=viewer["token"])[0] == 200
    code, body = proc.api("POST", f"{PATH}/abort", {"reason": "pager"})
    assert code == 200 and body["changed"] and body["state"]["phase"] == "Aborted", body
    code, body = proc.api("POST", f"{PATH}/abort", {"reason": "again"})
    assert code == 200 and not body["changed"]  # idempotent
    after = Users(port)
    for _ in range(100):
        after.one()
    assert set(after.pods) == {"orders-v1"}  # both workers on stable

    code, body = proc.api("POST", f"{PATH}/skip-analysis", {})
    assert code == 400 and "reason" in body["message"], body
    code, body = proc.api("POST", f"{PATH}/retry")
    assert code == 200 and body["state"]["phase"] == "Progressing" and body["state"]["run"] == 2
    wait_phase(proc, "orders-v2", "Paused")
    code, body = proc.api("POST", f"{PATH}/resume")
    assert code == 200
    found = wait_phase(proc, "orders-v2", "Promoted")
    assert found["weight"] == 100

    code, body = proc.api("GET", f"{PATH}/history")
    assert code == 200
    actors = [r["actor"] for r in body["items"]]
    assert "system:release" in actors and any(a != "system:release" for a in actors)
    messages = " ".join(r["message"] for r in body["items"])
    assert "abort release default/orders-v2: pager" in messages
    code, body = proc.api("POST", "/api/v1/namespaces/default/releases/nope/abort")
    assert code == 404
    code, body = proc.api("POST", f"{PATH}/explode")
    assert code == 400 and "command" in body["message"], body


def test_a_restart_mid_release_resumes_at_the_same_step(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    proc = _shop(serve, port, echo)
    before = wait_phase(proc, "orders-v2", "Paused")
    proc.stop()
    proc.start()
    after = state(proc, "orders-v2")
    assert (after["phase"], after["step"], after["weight"], after["run"]) == (
        before["phase"],
        before["step"],
        before["weight"],
        before["run"],
    )
    users = Users(port)
    for _ in range(60):
        users.one()
    assert set(users.pods) == {"orders-v1", "orders-v2"}  # the data plane kept the split
    # the CLI: status, promote, history
    cli = [sys.executable, "-m", "turnout", "release"]
    auth = ["--server", proc.admin, "--token", proc.token]
    out = subprocess.run(
        [*cli, "status", "orders-v2", "-o", "json", *auth],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"]["phase"] == "Paused"
    out = subprocess.run(
        [*cli, "promote", "orders-v2", "--reason", "looks good", *auth],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "promote orders-v2: done; Promoted" in out.stdout, out
    assert wait_phase(proc, "orders-v2", "Promoted")["by"] != "system:release"
    out = subprocess.run(
        [*cli, "history", "orders-v2", *auth], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and "looks good" in out.stdout, out
    out = subprocess.run(
        [*cli, "skip-analysis", "orders-v2", *auth], capture_output=True, text=True, timeout=30
    )
    assert out.returncode != 0 and "reason" in out.stderr + out.stdout
