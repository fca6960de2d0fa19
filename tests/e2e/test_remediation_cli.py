"""Remediation through the admin API and the CLI against a real ``turnout serve``:
intake errors and RBAC, ``runbook apply|test|history``, ``incidents list|show|approve|
deny|export``, approval roles, and no token in the export."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Cli
from turnout.testing import TurnoutProcess
from turnout.testing.polling import wait_until

RUNBOOK = """\
apiVersion: turnout.dev/v1alpha1
kind: Runbook
metadata: {name: careful, namespace: default}
spec:
  match: {labels: {alertname: HighLatency}}
  target: "{namespace}/{route}"
  steps:
  - name: shed
    action: shed
    params: {route: "{route}", percent: 10, ttl: 1m}
    approval: {roles: [admin], expiry: 15m}
"""


def webhook(fingerprint: str, alertname: str = "HighLatency", **labels: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighLatency"}',
        "status": "firing",
        "receiver": "turnout",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": alertname, **labels},
                "annotations": {},
                "startsAt": datetime.now(UTC).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": fingerprint,
            }
        ],
    }


def token(server: TurnoutProcess, name: str, role: str) -> str:
    status, body = server.api("POST", "/api/v1/tokens", {"name": name, "role": role})
    assert status == 201, body
    return str(body["token"])


def test_intake_refuses_bad_input_and_tokens_without_the_role(server: TurnoutProcess) -> None:
    path = "/api/v1/alerts/alertmanager"
    status, body = server.api("POST", path, "{not json")
    assert status == 400 and "not JSON" in body["message"]
    status, body = server.api("POST", path, {"version": "4", "groupKey": "g", "status": "firing"})
    assert status == 422 and body["message"].startswith("alerts:")
    status, _ = server.api("POST", path, webhook("x"), token="tnt_bad")
    assert status == 401
    viewer = token(server, "am-viewer", "viewer")
    status, body = server.api("POST", path, webhook("x"), token=viewer)
    assert status == 403 and "needs editor" in body["message"]
    assert "# TYPE turnout_remediation_breaker_state gauge" in server.metrics()


def test_runbook_cli_and_the_approval_flow(
    server: TurnoutProcess, cli: Cli, tmp_path: Path
) -> None:
    manifest = tmp_path / "careful.yaml"
    manifest.write_text(RUNBOOK)
    assert "runbook.turnout.dev/careful created" in cli.ok("runbook", "apply", "-f", str(manifest))
    plan = cli.ok("runbook", "test", "-l", "alertname=HighLatency", "-l", "route=checkout")
    assert "runbook default/careful would run on target default/checkout (dry run)" in plan
    assert "needs approval by admin" in plan
    miss = cli("runbook", "test", "-l", "alertname=HighLatency2")
    assert miss.code == 1
    assert "closest is default/careful: label alertname differs" in miss.out + miss.err

    editor = token(server, "am-editor", "editor")
    status, body = server.api(
        "POST", "/api/v1/alerts/alertmanager", webhook("fp-cli", route="checkout"), token=editor
    )
    assert status == 200 and len(body["runs"]) == 1, body
    (run_id,) = body["runs"]
    wait_until(lambda: run_id in cli.ok("incidents", "list", "--approvals"), 10)
    shown = cli.ok("incidents", "show", run_id)
    assert "Approval: step 1 needs admin" in shown and "waiting_approval" in shown
    status, body = server.api("POST", f"/api/v1/incidents/{run_id}/approve", token=editor)
    assert status == 403 and "needs role admin" in body["message"]
    assert "running" in cli.ok("incidents", "approve", run_id)
    wait_until(lambda: '"succeeded"' in cli.ok("incidents", "show", run_id, "-o", "json"), 10)
    assert run_id in cli.ok("runbook", "history", "careful")
    ranked = cli.ok("runbook", "rank", "-l", "alertname=HighLatency", "-l", "route=checkout")
    assert "default/careful" in ranked and "1/1" in ranked
    denied = cli("incidents", "deny", run_id)
    assert denied.code != 0 and "not waiting for an approval" in denied.out + denied.err

    exported = json.loads(cli.ok("incidents", "export", "--format", "json"))
    assert [r["id"] for r in exported["items"]] == [run_id]
    assert exported["items"][0]["timeline"][-1]["event"] == "succeeded"
    assert editor not in json.dumps(exported)
    html = cli.ok("incidents", "export", "--format", "html")
    assert html.startswith("<!DOCTYPE html>") and f"<h2>{run_id} " in html
    assert "approved" in html and "<script" not in html and editor not in html
    csv_lines = cli.ok("incidents", "export", "--format", "csv").splitlines()
    assert csv_lines[0] == "id,runbook,target,state,step,reason" and run_id in csv_lines[1]
