"""``audit``: who did what, newest first (admin role).

Filters (``--actor``, ``--result``, ``--limit``, ``--before``) are passed to
``GET /api/v1/audit``; the table shows TIME, ACTOR, ACTION, RESULT, TARGET, REVISION,
MESSAGE, and ``-o yaml|json`` prints the full entries including their diffs.
"""

from __future__ import annotations

from turnout.cli.client import connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.cli.output import parse_time, print_structured, render_table, write


def audit(
    conn: Connection,
    limit: int,
    before: int | None,
    actor: str | None,
    result: str | None,
    output: str,
) -> None:
    if output not in ("table", "wide", "json", "yaml"):
        raise CliError(f"-o must be table, wide, json or yaml, not {output!r}", 2)
    params = {"limit": limit, "before": before, "actor": actor, "result": result}
    with connect(conn) as client:
        body = client.get_json("/api/v1/audit", params=params)
    if not isinstance(body, dict):
        raise CliError("the server sent an unexpected answer to GET /api/v1/audit")
    if output in ("json", "yaml"):
        print_structured(body, output)
        return
    items = [i for i in body.get("items") or [] if isinstance(i, dict)]
    if not items:
        write("No audit entries.", err=True)
        return
    wide = output == "wide"
    rows = []
    for i in items:
        ts = parse_time(i.get("time"))
        row = [
            ts.strftime("%Y-%m-%d %H:%M:%S") if ts else str(i.get("time")),
            str(i.get("actor") or "-"),
            str(i.get("action") or "-"),
            str(i.get("result") or "-"),
            str(i.get("target") or "-"),
            str(i.get("revision") if i.get("revision") is not None else "-"),
            str(i.get("message") or "-").splitlines()[0] if i.get("message") else "-",
        ]
        if wide:
            row = [str(i.get("id")), *row, str(i.get("remote") or "-")]
        rows.append(row)
    headers = ["TIME", "ACTOR", "ACTION", "RESULT", "TARGET", "REVISION", "MESSAGE"]
    if wide:
        headers = ["ID", *headers, "REMOTE"]
    write(render_table(headers, rows))
