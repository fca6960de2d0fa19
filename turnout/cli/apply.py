"""``apply -f``, ``diff -f`` and ``delete -f``: manifests from files in one request.

The files become one multi-document YAML body (``turnout.cli.manifests``) sent as
``Content-Type: application/yaml`` to ``POST /api/v1/apply`` (or ``/delete``), so the
server validates and stores them in one revision or not at all. Results print kubectl
style, ``httproute.gateway.networking.k8s.io/shop created``; a 422 prints each problem as
``file:line:col: Kind ns/name: field.path: message`` (lines mapped back from the
request). ``diff`` is ``apply`` with ``dryRun=All`` printing each result's unified diff;
it exits 1 when there are differences, 0 when none, 2 on errors (like ``kubectl diff``).
"""

from __future__ import annotations

from typing import Any

from turnout.cli.client import DRY_RUN, Client, connect
from turnout.cli.errors import CliError, ValidationFailed
from turnout.cli.kinds import display_of
from turnout.cli.manifests import Bundle, read_bundle
from turnout.cli.options import Connection
from turnout.cli.output import render_diff, write
from turnout.cli.resources import print_delete_results

YAML = "application/yaml"


def send(client: Client, path: str, bundle: Bundle, params: dict[str, Any]) -> dict[str, Any]:
    try:
        body = client.call("POST", path, params=params, content=bundle.body, content_type=YAML)
    except ValidationFailed as exc:
        raise bundle.map_error(exc) from None
    if not isinstance(body, dict):
        raise CliError(f"the server sent an unexpected answer to POST {path}")
    return body


def result_name(r: dict[str, Any]) -> str:
    return f"{display_of(str(r.get('kind')))}/{r.get('name')}"


def apply(conn: Connection, files: list[str], dry_run: bool, message: str | None) -> None:
    bundle = read_bundle(files)
    params = {**(DRY_RUN if dry_run else {}), "message": message}
    with connect(conn) as client:
        body = send(client, "/api/v1/apply", bundle, params)
    print_results(body, " (dry run)" if dry_run else "")


def print_results(body: dict[str, Any], suffix: str) -> None:
    lines = [f"{result_name(r)} {r.get('action')}{suffix}" for r in body.get("results") or []]
    write("".join(line + "\n" for line in lines))


def diff(conn: Connection, files: list[str]) -> int:
    bundle = read_bundle(files)
    with connect(conn) as client:
        body = send(client, "/api/v1/apply", bundle, dict(DRY_RUN))
    texts = [
        str(r.get("diff") or "")
        for r in body.get("results") or []
        if r.get("action") not in ("unchanged", None) and r.get("diff")
    ]
    changed = [r for r in body.get("results") or [] if r.get("action") != "unchanged"]
    if texts:
        write("".join(render_diff(t) for t in texts))
    return 1 if changed else 0


def delete_files(
    conn: Connection, files: list[str], dry_run: bool, message: str | None, ignore_not_found: bool
) -> None:
    bundle = read_bundle(files)
    params = {**(DRY_RUN if dry_run else {}), "message": message}
    with connect(conn) as client:
        body = send(client, "/api/v1/delete", bundle, params)
    print_delete_results(body, " (dry run)" if dry_run else "", ignore_not_found)
