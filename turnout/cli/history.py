"""``history`` and ``rollback``: the store's revisions.

``history`` lists revisions newest first (REVISION, AGE, ACTOR, MESSAGE, CHANGES);
``history N`` shows one revision and its diff against the revision before it.
``rollback N`` asks the server to make revision N's objects current again — a new
revision, validated like any apply; ``--dry-run`` shows what would change.
"""

from __future__ import annotations

from typing import Any

from turnout.cli.apply import print_results
from turnout.cli.client import DRY_RUN, connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.cli.output import age, print_structured, render_diff, render_table, timestamp, write

STRUCTURED = ("yaml", "json")


def _check_output(output: str) -> None:
    if output not in ("table", *STRUCTURED):
        raise CliError(f"-o must be table, yaml or json, not {output!r}", 2)


def summarize_changes(changes: Any, limit: int = 2) -> str:
    if not isinstance(changes, list) or not changes:
        return "-"
    parts = []
    for c in changes[:limit]:
        if not isinstance(c, dict):
            continue
        ns = c.get("namespace")
        name = f"{ns}/{c.get('name')}" if ns else str(c.get("name"))
        parts.append(f"{c.get('action')} {c.get('kind')} {name}")
    more = f" (+{len(changes) - limit} more)" if len(changes) > limit else ""
    return ", ".join(parts) + more


def _message(item: dict[str, Any]) -> str:
    msg = str(item.get("message") or "")
    if not msg and item.get("rollbackOf") is not None:
        return f"rollback to revision {item['rollbackOf']}"
    return msg or "-"


def history(
    conn: Connection, revision: int | None, limit: int, before: int | None, output: str
) -> None:
    _check_output(output)
    with connect(conn) as client:
        if revision is not None:
            body = client.get_json(f"/api/v1/revisions/{revision}")
            diff: Any = None
            if output == "table":
                diff = client.get_json(
                    f"/api/v1/revisions/{revision - 1}/diff", params={"to": revision}
                )
        else:
            body = client.get_json("/api/v1/revisions", params={"limit": limit, "before": before})
    if not isinstance(body, dict):
        raise CliError("the server sent an unexpected answer for the revisions")
    if output in STRUCTURED:
        print_structured(body, output)
        return
    if revision is not None:
        _show_revision(body, diff)
        return
    items = [i for i in body.get("items") or [] if isinstance(i, dict)]
    if not items:
        write("No revisions yet: nothing has been applied through the API.", err=True)
        return
    rows = [
        [
            str(i.get("revision")),
            age(i.get("time")),
            str(i.get("actor") or "-"),
            _message(i),
            summarize_changes(i.get("changes")),
        ]
        for i in items
    ]
    write(render_table(["REVISION", "AGE", "ACTOR", "MESSAGE", "CHANGES"], rows))


def _show_revision(body: dict[str, Any], diff: Any) -> None:
    lines = [
        f"{'Revision:':<12}{body.get('revision')}",
        f"{'Time:':<12}{timestamp(body.get('time'))}",
        f"{'Actor:':<12}{body.get('actor') or '-'}",
        f"{'Message:':<12}{_message(body)}",
        "Changes:",
    ]
    changes = [c for c in body.get("changes") or [] if isinstance(c, dict)]
    if changes:
        rows = [
            [
                str(c.get("action")),
                str(c.get("kind")),
                str(c.get("namespace") or "-"),
                str(c.get("name")),
            ]
            for c in changes
        ]
        lines.append(
            render_table(["ACTION", "KIND", "NAMESPACE", "NAME"], rows, indent=2).rstrip("\n")
        )
    else:
        lines.append("  <none>")
    objects = body.get("objects")
    if isinstance(objects, list):
        lines.append(f"{'Objects:':<12}{len(objects)} (see -o yaml)")
    write("\n".join(lines))
    text = diff.get("diff") if isinstance(diff, dict) else None
    if text:
        write(f"\nDiff from revision {diff.get('from')}:")
        write(render_diff(str(text)))


def rollback(conn: Connection, revision: int, dry_run: bool, message: str | None) -> None:
    payload: dict[str, Any] = {"revision": revision}
    if message:
        payload["message"] = message
    with connect(conn) as client:
        body = client.call(
            "POST", "/api/v1/rollback", params=dict(DRY_RUN) if dry_run else None, json=payload
        )
    if not isinstance(body, dict):
        raise CliError("the server sent an unexpected answer to POST /api/v1/rollback")
    suffix = " (dry run)" if dry_run else ""
    print_results(
        {"results": [r for r in body.get("results") or [] if r.get("action") != "unchanged"]},
        suffix,
    )
    if not body.get("changed"):
        write(f"revision {revision} matches the current objects; nothing to roll back")
    elif dry_run:
        write(f"would roll back to revision {revision} as revision {body.get('revision')}")
    else:
        write(f"rolled back to revision {revision}: now at revision {body.get('revision')}")
