"""``turnout logs``: the server's merged access log (every worker) and its events.

Reads ``GET /api/v1/logs`` (filters ``--route``, ``--status``, ``--key``, ``--consumer``,
``--since``); with ``--follow`` it reads the NDJSON stream and prints each entry as it
arrives until Ctrl-C. One line per entry: requests as ``time status method host+path
route → backend duration``, events (tunnels, sandboxes, reloads) as ``time [event]
message``. ``-o json`` prints each entry as the JSON object the server sent.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from turnout.cli.client import Client, connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.cli.output import write

PATH = "/api/v1/logs"
OUTPUTS = ("text", "json")
IDLE_SECONDS = 45.0  # the server sends a heartbeat every 15 s


def line(entry: dict[str, Any]) -> str:
    when = str(entry.get("time") or "-")
    if entry.get("type") == "event":
        return f"{when}  [{entry.get('event', '')}] {entry.get('message', '')}"

    def text(name: str) -> str:
        value = entry.get(name)
        return "-" if value is None or value == "" else str(value)

    duration = entry.get("duration_ms")
    took = f"{duration:.1f}ms" if isinstance(duration, int | float) else "-"
    extra = "".join(
        f" {name}={entry[name]}" for name in ("routing_key", "consumer") if entry.get(name)
    )
    return (
        f"{when}  {text('status')} {text('method')} {entry.get('host') or ''}{text('path')}  "
        f"{text('route')} → {text('backend')}  {took}{extra}"
    )


def logs(
    conn: Connection,
    params: dict[str, Any],
    since: float,
    follow: bool,
    limit: int,
    output: str,
) -> None:
    if output not in OUTPUTS:
        raise CliError(f"-o must be one of {', '.join(OUTPUTS)}, not {output!r}", 2)
    query = {**params, "limit": limit}
    if since:
        query["since"] = f"{time.time() - since:.3f}"
    with connect(conn) as client:
        if follow:
            _follow(client, query, output)
            return
        body = client.get_json(PATH, params=query)
    if not isinstance(body, dict):
        raise CliError(f"the server sent an unexpected answer to GET {PATH}")
    items = [i for i in body.get("items") or [] if isinstance(i, dict)]
    write("".join(_show(i, output) + "\n" for i in items))
    if not items and sys.stderr.isatty():
        write("No matching log entries yet.", err=True)


def _show(entry: dict[str, Any], output: str) -> str:
    return json.dumps(entry, separators=(",", ":")) if output == "json" else line(entry)


def _follow(client: Client, query: dict[str, Any], output: str) -> None:
    lines = client.stream_lines(PATH, {**query, "follow": "true"}, idle_timeout=IDLE_SECONDS)
    try:
        for raw in lines:
            try:
                entry = json.loads(raw)
            except ValueError:
                raise CliError(f"the server sent a line that is not JSON on GET {PATH}") from None
            if isinstance(entry, dict) and entry.get("type") != "heartbeat":
                write(_show(entry, output))
    except KeyboardInterrupt:
        return  # Ctrl-C is how a follow ends
    finally:
        lines.close()
    raise CliError("the server ended the log stream")
