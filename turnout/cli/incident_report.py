"""``incidents export --format html``: one standalone HTML page, a section per run with
its alert, plan and timeline. No scripts, no external assets; every value is escaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;"
    "text-align:left;vertical-align:top}.succeeded{color:#060}.failed,.expired,.denied{color:#a00}"
    "section{border-top:2px solid #333;margin-top:1.5em}code{font-size:90%}"
)


def _when(at: Any) -> str:
    return datetime.fromtimestamp(float(at), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _run(run: dict[str, Any]) -> str:
    alert = run.get("alertDetail", {})
    state = escape(str(run["state"]))
    labels = escape(json.dumps(alert.get("labels", {}), sort_keys=True))
    rows = [
        f"<h2>{escape(run['id'])} <span class='{state}'>{state}</span></h2>",
        "<table>",
        f"<tr><th>Runbook</th><td>{escape(run['runbook'])}</td></tr>",
        f"<tr><th>Target</th><td>{escape(run['target'])}</td></tr>",
        f"<tr><th>Alert</th><td>{escape(str(alert.get('alertname', '')))} "
        f"[{escape(str(alert.get('status', '')))}], {int(alert.get('deliveries', 0))} deliveries, "
        f"labels <code>{labels}</code></td></tr>",
        f"<tr><th>Reason</th><td>{escape(str(run.get('reason', '')))}</td></tr>",
        "</table><h3>Plan</h3><table><tr><th>#</th><th>step</th><th>action</th><th>params</th></tr>",
    ]
    for i, step in enumerate(run.get("plan", [])):
        rows.append(
            f"<tr><td>{i + 1}</td><td>{escape(step['name'])}</td><td>{escape(step['action'])}</td>"
            f"<td><code>{escape(json.dumps(step['params'], sort_keys=True))}</code></td></tr>"
        )
    rows.append(
        "</table><h3>Timeline</h3><table><tr><th>time</th><th>event</th><th>detail</th></tr>"
    )
    for event in run.get("timeline", []):
        rows.append(
            f"<tr><td>{_when(event['at'])}</td><td>{escape(str(event['event']))}</td>"
            f"<td>{escape(str(event.get('detail', '')))}</td></tr>"
        )
    rows.append("</table>")
    return "<section>" + "\n".join(rows) + "</section>"


def render_report(runs: list[dict[str, Any]], generated: datetime) -> str:
    body = "\n".join(_run(r) for r in runs) or "<p>No runs.</p>"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Turnout incidents</title><style>{STYLE}</style></head><body>"
        f"<h1>Turnout incidents</h1><p>{len(runs)} runs, generated "
        f"{generated.strftime('%Y-%m-%d %H:%M:%S UTC')}</p>\n{body}\n</body></html>"
    )
