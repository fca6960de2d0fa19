"""The ``turnout release`` commands: clients of ``/api/v1/namespaces/{ns}/releases``.

``status --watch`` redraws a Rich table twice a second: phase, step, weight, the reason
of the last transition and the analysis conditions (success rate and latency per
version with sample sizes, and the verdict), until the Release settles or Ctrl-C.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from turnout.cli.client import Client, connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection

SETTLED = ("Promoted", "Aborted", "Degraded")


def _base(client: Client, namespace: str | None, name: str) -> str:
    ns = namespace or client.target.namespace or "default"
    return f"/api/v1/namespaces/{ns}/releases/{name}"


def start(conn: Connection, file: str) -> None:
    try:
        text = Path(file).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror}", 2) from None
    with connect(conn) as client:
        body = client.call("POST", "/api/v1/apply", content=text, content_type="application/yaml")
    for item in (body or {}).get("results", []):
        print(f"{item.get('kind')} {item.get('namespace')}/{item.get('name')} {item.get('action')}")


def command(conn: Connection, verb: str, name: str, namespace: str | None, reason: str) -> None:
    with connect(conn) as client:
        body = client.call(
            "POST", f"{_base(client, namespace, name)}/{verb}", json={"reason": reason}
        )
    state = body["state"]
    what = "done" if body.get("changed") else "nothing to do"
    where = f"{state['phase']} at step {state['step']}, weight {state['weight']}%"
    print(f"{verb} {name}: {what}; {where}")


def render(view: dict[str, Any]) -> Group:
    state = view["state"]
    table = Table(show_header=False, box=None)
    table.add_row("release", f"{view['namespace']}/{view['name']}")
    table.add_row("phase", Text(state["phase"], style="bold"))
    steps = view["steps"]
    shown = steps[state["step"]] if state["step"] < len(steps) else "done"
    table.add_row("step", f"{state['step']}/{len(steps)} ({shown})")
    table.add_row("weight", f"candidate {state['weight']}% / stable {100 - state['weight']}%")
    table.add_row("why", state.get("reason") or "")
    if state.get("skip_analysis"):
        table.add_row("analysis", Text("skipped (emergency bypass)", style="yellow"))
    for cond in view.get("conditions", []):
        if cond.get("type") == "Analysis":
            style = "red" if cond.get("status") == "False" else "green"
            table.add_row("verdict", Text(str(cond.get("reason")), style=style))
            for part in str(cond.get("message", "")).split("; "):
                table.add_row("", part)
    return Group(table)


def status(conn: Connection, name: str, namespace: str | None, watch: bool, output: str) -> None:
    if output not in ("text", "json"):
        raise CliError(f"-o must be text or json, not {output!r}", 2)
    with connect(conn) as client:
        path = f"{_base(client, namespace, name)}/state"
        view = client.call("GET", path)
        if output == "json":
            print(json.dumps(view, indent=2))
            return
        console = Console()
        if not watch:
            console.print(render(view))
            return
        with Live(render(view), console=console, refresh_per_second=4) as live:
            try:
                while view["state"]["phase"] not in SETTLED:
                    time.sleep(0.5)
                    view = client.call("GET", path)
                    live.update(render(view))
            except KeyboardInterrupt:
                pass


def history(conn: Connection, name: str, namespace: str | None) -> None:
    with connect(conn) as client:
        body = client.call("GET", f"{_base(client, namespace, name)}/history")
    table = Table("REVISION", "TIME", "ACTOR", "MESSAGE")
    for rev in body.get("items", []):
        table.add_row(str(rev["revision"]), rev["time"], rev["actor"], rev["message"])
    Console().print(table)
