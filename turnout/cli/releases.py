"""The ``turnout release`` commands: clients of ``/api/v1/namespaces/{ns}/releases``.

``status --watch`` redraws a Rich table twice a second: phase, step, weight, the reason
of the last transition and the analysis conditions (success rate and latency per
version with sample sizes, and the verdict), until the Release settles or Ctrl-C.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
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


def approve(
    conn: Connection, name: str, namespace: str | None, gate: str | None, reason: str
) -> None:
    with connect(conn) as client:
        body = client.call(
            "POST",
            f"{_base(client, namespace, name)}/approve",
            json={"gate": gate, "reason": reason},
        )
    state = body["state"]
    what = "done" if body.get("changed") else "nothing to do"
    print(f"approve {name}: {what}; {state['phase']} at step {state['step']}: {state['reason']}")


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


def _when(epoch: float | None) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_queue(view: dict[str, Any]) -> Table:
    paused = view.get("paused")
    closed = view.get("blackout")
    notes = [f"namespaces {', '.join(view['namespaces'])}"]
    if view.get("next"):
        notes.append(f"next {view['next']}")
    if paused:
        notes.append(f"PAUSED by {paused.get('by')}: {paused.get('reason') or '-'}")
    if closed:
        notes.append(f"BLACKOUT {closed['name']} until {_when(closed['until'])}")
    table = Table(
        "#",
        "RELEASE",
        "BACKEND",
        "PHASE",
        "PRIORITY",
        "WHY",
        title=f"{view['environment']}: " + "; ".join(notes),
        title_justify="left",
    )
    for a in view["active"]:
        phase = a["phase"] + (" (bypass)" if a.get("bypass") else "")
        table.add_row(
            "-",
            f"{a['namespace']}/{a['name']}",
            a["backend"],
            phase,
            "",
            f"step {a['step']}, weight {a['weight']}%",
        )
    for q in view["queued"]:
        table.add_row(
            str(q["position"]),
            f"{q['namespace']}/{q['name']}",
            q["backend"],
            "Pending",
            str(q["priority"]),
            q["waiting"],
        )
    return table


def queue(
    conn: Connection, environment: str | None, output: str, pause: bool, resume: bool, reason: str
) -> None:
    if output not in ("text", "json"):
        raise CliError(f"-o must be text or json, not {output!r}", 2)
    if (pause or resume) and environment is None:
        raise CliError("--pause/--resume need the environment: turnout release queue ENV", 2)
    if pause and resume:
        raise CliError("give --pause or --resume, not both", 2)
    with connect(conn) as client:
        if pause or resume:
            verb = "pause" if pause else "resume"
            body = client.call(
                "POST", f"/api/v1/release-queues/{environment}/{verb}", json={"reason": reason}
            )
            print(f"{verb} {environment}: {'done' if body.get('changed') else 'nothing to do'}")
            return
        if environment is None:
            views = client.call("GET", "/api/v1/release-queues").get("items", [])
        else:
            views = [client.call("GET", f"/api/v1/release-queues/{environment}")]
    if output == "json":
        print(json.dumps(views if environment is None else views[0], indent=2))
        return
    console = Console()
    if not views:
        console.print("no Environments")
    for view in views:
        console.print(render_queue(view))


def promote_to(
    conn: Connection, name: str, environment: str, namespace: str | None, to_namespace: str | None
) -> None:
    with connect(conn) as client:
        body = client.call(
            "POST",
            f"{_base(client, namespace, name)}/promote-to",
            json={"environment": environment, "namespace": to_namespace},
        )
    print(f"release {body['namespace']}/{body['name']} created in {environment} (queued there)")
