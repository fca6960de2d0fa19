"""``token create|list|revoke``: API tokens (admin role).

``create`` prints the secret once — alone on stdout, so ``TOKEN=$(turnout token create
ci --role editor)`` works — and the details on stderr. ``list`` shows every token's
role, namespaces, expiry and last use; ``revoke`` takes an id or a name.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from turnout.cli.client import connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.cli.output import human_duration, parse_time, print_structured, render_table, write

ROLES = ("viewer", "editor", "admin")
_TTL_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_HOURS = {"d": 24, "w": 24 * 7}


def normalise_ttl(ttl: str) -> str:
    """``30d`` → ``720h``, ``1w2d`` → ``216h``: days and weeks in hours (what the server's
    duration parser reads); anything else is sent as given and checked by the server."""
    text = ttl.strip().lower()
    parts = _TTL_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return ttl.strip()
    if not any(u in _HOURS for _, u in parts):
        return text
    hours = sum(int(n) * _HOURS.get(u, 1) for n, u in parts if u in (*_HOURS, "h"))
    rest = "".join(n + u for n, u in parts if u not in (*_HOURS, "h"))
    return f"{hours}h{rest}"


def create(
    conn: Connection,
    name: str,
    role: str,
    namespaces: list[str],
    ttl: str | None,
    output: str,
) -> None:
    if role not in ROLES:
        raise CliError(f"--role must be one of {', '.join(ROLES)}, not {role!r}", 2)
    if output not in ("text", "json", "yaml"):
        raise CliError(f"-o must be text, json or yaml, not {output!r}", 2)
    payload = {
        "name": name,
        "role": role,
        "namespaces": namespaces,
        "ttl": normalise_ttl(ttl) if ttl else None,
    }
    with connect(conn) as client:
        body = client.call("POST", "/api/v1/tokens", json=payload)
    if not isinstance(body, dict) or not body.get("token"):
        raise CliError("the server sent an unexpected answer to POST /api/v1/tokens")
    if output != "text":
        print_structured(body, output)
        return
    scope = ", ".join(body.get("namespaces") or []) or "all namespaces"
    expires = body.get("expiresAt") or "never"
    write(
        f"token {body.get('name')!r} ({body.get('id')}) created: role {body.get('role')}, "
        f"{scope}, expires {expires}. The secret is shown only once:",
        err=True,
    )
    write(str(body["token"]))


def _state(item: dict[str, Any]) -> str:
    if item.get("revoked"):
        return "revoked"
    expires = parse_time(item.get("expiresAt"))
    if expires is not None and expires <= datetime.now(UTC):
        return "expired"
    return "active"


def _when(value: Any, future: bool = False) -> str:
    ts = parse_time(value)
    if ts is None:
        return "never" if future else "-"
    delta = (datetime.now(UTC) - ts).total_seconds()
    return f"in {human_duration(-delta)}" if delta < 0 else f"{human_duration(delta)} ago"


def list_tokens(conn: Connection, output: str, include_revoked: bool = False) -> None:
    if output not in ("table", "json", "yaml"):
        raise CliError(f"-o must be table, json or yaml, not {output!r}", 2)
    with connect(conn) as client:
        body = client.get_json(
            "/api/v1/tokens", params={"revoked": "true"} if include_revoked else None
        )
    if not isinstance(body, dict):
        raise CliError("the server sent an unexpected answer to GET /api/v1/tokens")
    if output != "table":
        print_structured(body, output)
        return
    items = [i for i in body.get("items") or [] if isinstance(i, dict)]
    rows = [
        [
            str(i.get("id")),
            str(i.get("name")),
            str(i.get("role")),
            ",".join(i.get("namespaces") or []) or "*",
            _when(i.get("createdAt")),
            str(i.get("createdBy") or "-"),
            _when(i.get("expiresAt"), future=True),
            _when(i.get("lastUsedAt")),
            _state(i),
        ]
        for i in items
    ]
    headers = [
        "ID",
        "NAME",
        "ROLE",
        "NAMESPACES",
        "CREATED",
        "CREATED BY",
        "EXPIRES",
        "LAST USED",
        "STATE",
    ]
    write(render_table(headers, rows))


def revoke(conn: Connection, id_or_name: str) -> None:
    with connect(conn) as client:
        body = client.call("DELETE", f"/api/v1/tokens/{quote(id_or_name, safe='')}")
    name = body.get("name") if isinstance(body, dict) else id_or_name
    token_id = body.get("id") if isinstance(body, dict) else ""
    write(f"token {name!r} ({token_id}) revoked")
