"""``incidents`` and ``runbook``: thin clients of ``/api/v1/incidents`` and
``/api/v1/remediation/test``; ``runbook apply`` is ``apply -f`` limited to Runbooks."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from turnout.cli.client import connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.cli.output import render_table, write
from turnout.cli.replay import impact, requests_only
from turnout.core.durations import DurationError, parse_duration

COLUMNS = ("ID", "RUNBOOK", "TARGET", "STATE", "STEP", "REASON")


def _row(run: dict[str, Any]) -> list[str]:
    return [
        run["id"],
        run["runbook"],
        run["target"],
        run["state"],
        f"{min(run['step'] + 1, run['steps'])}/{run['steps']}",
        (run.get("reason") or "")[:80],
    ]


def _print(items: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        write(json.dumps({"items": items}, indent=2))
    elif output == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow([c.lower() for c in COLUMNS])
        writer.writerows(_row(r) for r in items)
        write(buf.getvalue().rstrip("\n"))
    elif output == "table":
        write(render_table(COLUMNS, [_row(r) for r in items]) if items else "No runs.")
    else:
        raise CliError(f"--format {output!r}: expected table, json or csv", 2)


def list_runs(conn: Connection, active: bool, approvals: bool, output: str) -> None:
    with connect(conn) as client:
        if approvals:
            body = client.get_json("/api/v1/incidents/approvals")
        else:
            body = client.get_json("/api/v1/incidents", {"active": "true" if active else None})
    _print(body["items"], output)


def _when(at: Any) -> str:
    return datetime.fromtimestamp(float(at), UTC).strftime("%Y-%m-%d %H:%M:%S")


def show(conn: Connection, run_id: str, output: str) -> None:
    with connect(conn) as client:
        run = client.get_json(f"/api/v1/incidents/{run_id}")
    if output == "json":
        write(json.dumps(run, indent=2))
        return
    alert = run.get("alertDetail", {})
    lines = [
        f"Run:      {run['id']} ({run['state']})",
        f"Runbook:  {run['runbook']}",
        f"Target:   {run['target']}",
        f"Alert:    {alert.get('alertname', '')} [{alert.get('status', '')}] "
        f"fingerprint {alert.get('fingerprint', '')}, {alert.get('deliveries', 0)} deliveries",
    ]
    if run.get("reason"):
        lines.append(f"Reason:   {run['reason']}")
    if run.get("state") == "waiting_approval" and run.get("approval"):
        a = run["approval"]
        roles = ", ".join(a["roles"])
        lines.append(
            f"Approval: step {a['step'] + 1} needs {roles} before {_when(a['expiresAt'])}"
            f" (turnout incidents approve {run['id']})"
        )
    lines.append("Steps:")
    for i, step in enumerate(run.get("plan", [])):
        mark = "done" if i < run["step"] else ("skip" if step.get("skip") else "")
        lines.append(
            f"  {i + 1}. {step['name']}: {step['action']} {json.dumps(step['params'])} {mark}"
        )
    lines.append("Timeline:")
    for event in run.get("timeline", []):
        lines.append(f"  {_when(event['at'])}  {event['event']:<20} {event.get('detail', '')}")
    write("\n".join(lines))


def decide(conn: Connection, run_id: str, verb: str) -> None:
    with connect(conn) as client:
        run = client.call("POST", f"/api/v1/incidents/{run_id}/{verb}")
    reverted = run.get("reverted") or []
    tail = f" (reverted {', '.join(reverted)})" if reverted else ""
    write(f"run {run['id']}: {run['state']}{tail}")


def advise(conn: Connection, run_id: str) -> None:
    with connect(conn) as client:
        answer = client.call("POST", f"/api/v1/incidents/{run_id}/advice")
    write(f"advice from {answer['model']} (advisory only; nothing was changed):")
    write(answer["advice"])


def export(conn: Connection, output: str) -> None:
    with connect(conn) as client:
        items = client.get_json("/api/v1/incidents", {"limit": 5000})["items"]
        if output in ("json", "html"):
            full = [client.get_json(f"/api/v1/incidents/{r['id']}") for r in items]
            if output == "json":
                write(json.dumps({"items": full}, indent=2))
            else:
                from turnout.cli.incident_report import render_report

                write(render_report(full, datetime.now(UTC)))
            return
    if output != "csv":
        raise CliError(f"--format {output!r}: expected json, csv or html", 2)
    _print(items, "csv")


def apply_runbooks(conn: Connection, file: Path) -> None:
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(file.read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"{file}: {exc}", 2) from None
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "Runbook":
            raise CliError(f"{file}: only Runbook objects here (use `turnout apply` for others)", 2)
    from turnout.cli.apply import apply

    apply(conn, [str(file)], False, "runbook apply")


def _pairs(labels: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for raw in labels:
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise CliError(f"--label {raw!r}: expected KEY=VALUE", 2)
        pairs[key] = value
    return pairs


def rank(conn: Connection, labels: list[str]) -> None:
    with connect(conn) as client:
        body = client.call("POST", "/api/v1/remediation/rank", json={"labels": _pairs(labels)})
    rows = [
        [
            r["runbook"],
            f"{r['score']:.3f}",
            f"{r['effective']}/{r['runs']}",
            f"{r['similarity']:.2f}",
            "yes" if r["matches"] else "no",
        ]
        for r in body["items"]
    ]
    headers = ("RUNBOOK", "SCORE", "EFFECTIVE", "SIMILARITY", "MATCHES")
    write(render_table(headers, rows) if rows else "No runbooks.")


def test_alert(conn: Connection, labels: list[str], resolved: bool, last: str = "") -> None:
    body = {"labels": _pairs(labels), "status": "resolved" if resolved else "firing"}
    try:
        window = parse_duration(last) if last else 0.0
    except DurationError as exc:
        raise CliError(f"--last: {exc}", 2) from None
    entries: list[dict[str, Any]] | None = None
    with connect(conn) as client:
        answer = client.call("POST", "/api/v1/remediation/test", json=body)
        if window and answer["runs"]:
            since = time.time() - window
            logs = client.get_json("/api/v1/logs", {"since": since, "limit": 10_000})
            entries = requests_only(logs.get("items") or [])
    if not answer["runs"]:
        raise CliError(answer["message"] or "no runbook matches", 1)
    if entries is not None:
        write(f"replayed on {len(entries)} requests recorded in the last {last}")
    for run in answer["runs"]:
        write(f"runbook {run['runbook']} would run on target {run['target']} (dry run):")
        namespace = str(run["runbook"]).split("/", 1)[0]
        for i, step in enumerate(run["plan"]):
            flags = []
            if step.get("skip"):
                flags.append("skipped: its when does not match")
            if step.get("approval"):
                flags.append(f"needs approval by {', '.join(step['approval']['roles'])}")
            extra = f"  [{'; '.join(flags)}]" if flags else ""
            write(
                f"  {i + 1}. {step['name']}: {step['action']} {json.dumps(step['params'])}{extra}"
            )
            if entries is not None:
                write(f"     would have changed: {impact(step, namespace, entries)}")


def runbook_history(conn: Connection, name: str, output: str) -> None:
    ref = name if "/" in name else f"default/{name}"
    with connect(conn) as client:
        body = client.get_json("/api/v1/incidents", {"runbook": ref})
    _print(body["items"], output)


SKELETON = """\
# A Runbook for the {alert} alert: edit, then `turnout runbook apply -f FILE`.
# Try it first: `turnout runbook test -l alertname={alert} -l route=ROUTE`.
apiVersion: turnout.dev/v1alpha1
kind: Runbook
metadata:
  name: {name}
  namespace: {namespace}
spec:
  match:
    labels: {{alertname: {alert}}}     # equality; labelsRegex / annotations also work
  target: "{{namespace}}/{{route}}"      # alert labels as {{label}}: one run per target
  cooldown: 5m
  deadline: 10m
  dryRun: true                       # plan only until you trust it
  limits: {{maxShedPercent: 50, maxBlockedClients: 256}}
  steps:
  - name: shed
    action: shed
    params: {{route: "{{route}}", percent: 30, ttl: 5m}}
  - name: verify
    action: verify_error_rate
    params: {{route: "{{route}}", below: 0.05, minRequests: 20}}
    retries: 2
    backoff: 30s
  # - name: notify
  #   action: notify_webhook
  #   params: {{url: "https://hooks.example/...", format: slack, message: "shed {{route}}"}}
"""


def new_runbook(alert: str, namespace: str) -> None:
    if not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", alert):
        raise CliError(f"--for-alert {alert!r}: not an alert name (letters, digits, _ and :)", 2)
    name = re.sub(r"(?<!^)(?=[A-Z])", "-", alert.replace("_", "-").replace(":", "-")).lower()
    name = re.sub(r"-+", "-", name).strip("-")[:63]
    write(SKELETON.format(alert=alert, name=name, namespace=namespace).rstrip("\n"))
