"""``trace --key KEY``: the requests that carried a sandbox routing key.

Reads ``GET /api/v1/trace`` (the server's recent per-key history, shipped by the workers
once a second). Without ``--follow`` it prints the latest ``--limit`` requests as a table,
in time order; with ``--follow`` it reads the server's NDJSON stream and prints one line
per request as it arrives (fixed-width columns, since the rows to come are unknown) until
Ctrl-C, which ends it quietly with exit code 0. ``-o json`` prints each request as one
JSON object per line in both modes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from turnout.cli.client import Client, connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.cli.output import render_table, write

PATH = "/api/v1/trace"
HEADERS = ["TIME", "METHOD", "TARGET", "STATUS", "DURATION", "BACKEND", "ENDPOINT", "ROUTE"]
# --follow: minimum column widths (a longer value pushes the rest of its row right)
WIDTHS = [12, 7, 32, 6, 10, 28, 21, 0]
GAP = "   "
# The server sends a heartbeat line every 15 s; this long without a byte means it is gone.
IDLE_SECONDS = 45.0
OUTPUTS = ("table", "json")


def clock(value: Any) -> str:
    """Unix seconds → local ``HH:MM:SS.mmm``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    ts = datetime.fromtimestamp(value)
    return ts.strftime("%H:%M:%S.") + f"{ts.microsecond // 1000:03d}"


def duration(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return f"{value:.1f}ms"


def row(item: dict[str, Any]) -> list[str]:
    def text(key: str) -> str:
        value = item.get(key)
        return "-" if value is None or value == "" else str(value)

    return [
        clock(item.get("time")),
        text("method"),
        text("target"),
        text("status"),
        duration(item.get("durationMs")),
        text("backend"),
        text("endpoint"),
        text("route"),
    ]


def fixed(cells: list[str]) -> str:
    out = [c.ljust(w) if w else c for c, w in zip(cells, WIDTHS, strict=True)]
    return GAP.join(out).rstrip()


def _when(item: dict[str, Any]) -> tuple[float, int]:
    t, seq = item.get("time"), item.get("seq")
    return (
        float(t) if isinstance(t, int | float) else 0.0,
        seq if isinstance(seq, int) else 0,
    )


def _json_line(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def trace(conn: Connection, key: str, follow: bool, limit: int, output: str) -> None:
    if output not in OUTPUTS:
        raise CliError(f"-o must be one of {', '.join(OUTPUTS)}, not {output!r}", 2)
    if limit < 1:
        raise CliError("--limit must be >= 1", 2)
    with connect(conn) as client:
        if follow:
            _follow(client, key, limit, output)
            return
        body = client.get_json(PATH, params={"key": key, "limit": limit})
    if not isinstance(body, dict):
        raise CliError(f"the server sent an unexpected answer to GET {PATH}")
    items = [i for i in body.get("items") or [] if isinstance(i, dict)]
    # the server's order is arrival (each worker ships its requests once a second)
    items.sort(key=_when)
    if output == "json":
        write("".join(_json_line(i) + "\n" for i in items))
        return
    if not items:
        owner = body.get("owner")
        if isinstance(owner, dict):
            whose = f" ({owner.get('kind')} {owner.get('namespace')}/{owner.get('name')})"
        else:
            whose = " (no Sandbox or RouteGroup has this key)"
        write(f"No requests with routing key {key!r}{whose} yet.", err=True)
        return
    write(render_table(HEADERS, [row(i) for i in items]))


def _requests(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            raise CliError(f"the server sent a line that is not JSON on GET {PATH}") from None
        if isinstance(doc, dict) and doc.get("type") == "REQUEST":
            request = doc.get("request")
            if isinstance(request, dict):
                yield request


def _follow(client: Client, key: str, limit: int, output: str) -> None:
    params = {"key": key, "limit": limit, "follow": "true"}
    lines = client.stream_lines(PATH, params, idle_timeout=IDLE_SECONDS)
    try:
        if sys.stderr.isatty():
            write(f"following requests with routing key {key!r}; Ctrl-C to stop", err=True)
        if output == "table":
            write(fixed(HEADERS))
        for request in _requests(lines):
            write(_json_line(request) if output == "json" else fixed(row(request)))
    except KeyboardInterrupt:
        return  # Ctrl-C is how a follow ends
    finally:
        lines.close()
    raise CliError("the server ended the trace stream")
