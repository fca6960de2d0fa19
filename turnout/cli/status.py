"""``status`` and ``whoami``: what the server runs and who the token is.

``status`` prints the served and stored revisions, the store (URL with the password
masked by the server, dialect, connected), leadership and each worker's revision.
"""

from __future__ import annotations

from typing import Any

from turnout.cli.client import connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.cli.output import print_structured, render_table, write


def _check(output: str) -> None:
    if output not in ("text", "json", "yaml"):
        raise CliError(f"-o must be text, json or yaml, not {output!r}", 2)


def status(conn: Connection, output: str) -> None:
    _check(output)
    with connect(conn) as client:
        body = client.get_json("/api/v1/status")
        server = client.target.server
    if not isinstance(body, dict):
        raise CliError("the server sent an unexpected answer to GET /api/v1/status")
    if output != "text":
        print_structured(body, output)
        return
    raw = body.get("store")
    store: dict[str, Any] = raw if isinstance(raw, dict) else {}
    connected = store.get("connected")
    lines = [
        f"{'Server:':<16}{server}",
        f"{'Revision:':<16}{body.get('revision', '-')}",
        f"{'Store revision:':<16}{body.get('storeRevision', '-')}",
        f"{'Store:':<16}{store.get('url', '-')} ({store.get('dialect', '?')}, "
        f"{'connected' if connected else 'NOT connected' if connected is False else '?'})",
        f"{'Leader:':<16}{'yes' if body.get('leader') else 'no'}",
    ]
    workers = [w for w in body.get("workers") or [] if isinstance(w, dict)]
    lines.append(f"{'Workers:':<16}{len(workers)}")
    write("\n".join(lines))
    if workers:
        keys = [
            k for k in ("pid", "revision", "storeRevision", "state") if any(k in w for w in workers)
        ]
        rows = [[str(w.get(k, "-")) for k in keys] for w in workers]
        headers = [{"storeRevision": "STORE REVISION"}.get(k, k.upper()) for k in keys]
        write(render_table(headers, rows, indent=2))


def whoami(conn: Connection, output: str) -> None:
    _check(output)
    with connect(conn) as client:
        body = client.get_json("/api/v1/whoami")
        source = client.target.token_source
        server = client.target.server
    if not isinstance(body, dict):
        raise CliError("the server sent an unexpected answer to GET /api/v1/whoami")
    if output != "text":
        print_structured(body, output)
        return
    scope = ", ".join(body.get("namespaces") or []) or "all namespaces"
    write(
        f"{body.get('name')} ({body.get('id')}): role {body.get('role')}, {scope}\n"
        f"server {server}, token from {source or 'nowhere'}"
    )
