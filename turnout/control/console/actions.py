"""The console's writes: log in and out, and each button or form that changes something.

A write is ``console.writer`` (session + CSRF) → one admin API call with the session's
token → a 303 back to the page that shows the effect. The API does the checking
(roles, namespace scopes, validation) and writes the audit record, so a viewer who
forges a form gets the API's 403, audited. Logging in and out is audited here.
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from turnout.control.console.client import ApiFailure
from turnout.control.console.pages import console_of
from turnout.control.console.web import (
    COOKIE,
    HEADERS,
    MAX_LOGIN,
    back,
    read_form,
    remote,
    same_origin,
)
from turnout.control.service import AuthError

router = APIRouter(include_in_schema=False)

RELEASE_COMMANDS = ("promote", "abort", "pause", "resume", "retry", "approve")


@router.post("/ui/login")
async def login(request: Request) -> Response:
    console = console_of(request)
    if not same_origin(request):
        return console.render(
            request, "login.html", None, status=403, error="refused: a login from another site"
        )
    form = await read_form(request, MAX_LOGIN)
    token = str(form.get("token") or "").strip()
    try:
        principal = await console.control.authenticate(
            f"Bearer {token}", remote(request), "POST /ui/login"
        )
    except AuthError as exc:
        return console.render(request, "login.html", None, status=401, error=str(exc))
    session = console.sessions.open(token, principal)
    await console.control.audit(principal, "login", "ok", "console", "", remote(request))
    resp = RedirectResponse("/ui/", status_code=303, headers=HEADERS)
    resp.set_cookie(
        COOKIE,
        session.id,
        max_age=int(console.sessions.ttl),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return resp


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    console = console_of(request)
    session, _ = await console.writer(request)
    console.sessions.close(session.id)
    await console.control.audit(session.principal, "logout", "ok", "console", "", remote(request))
    resp = RedirectResponse("/ui/login", status_code=303, headers=HEADERS)
    resp.delete_cookie(COOKIE, path="/ui")
    return resp


@router.post("/ui/releases/{namespace}/{name}/{command}")
async def release_command(request: Request, namespace: str, name: str, command: str) -> Response:
    console = console_of(request)
    session, form = await console.writer(request)
    if command not in RELEASE_COMMANDS:
        raise ApiFailure(404, f"unknown release command {command!r}", [])
    body = {"reason": str(form.get("reason") or "")}
    gate = str(form.get("gate") or "")
    if command == "approve" and gate:  # without one: what the release waits for now
        body["gate"] = gate
    await console.api(request, session).post(
        f"/namespaces/{namespace}/releases/{name}/{command}", body
    )
    what = f"{command} {gate}" if command == "approve" and gate else command
    return back("/ui/releases", done=f"{what}: {namespace}/{name}")


@router.post("/ui/release-queues/{environment}/{verb}")
async def release_queue_command(request: Request, environment: str, verb: str) -> Response:
    console = console_of(request)
    session, form = await console.writer(request)
    if verb not in ("pause", "resume"):
        raise ApiFailure(404, f"unknown queue command {verb!r}", [])
    body = {"reason": str(form.get("reason") or "")}
    await console.api(request, session).post(f"/release-queues/{environment}/{verb}", body)
    return back("/ui/releases", done=f"{verb}: queue {environment}")


@router.post("/ui/incidents/{run_id}/{decision}")
async def incident_decision(request: Request, run_id: str, decision: str) -> Response:
    console = console_of(request)
    session, _ = await console.writer(request)
    if decision not in ("approve", "deny", "cancel"):
        raise ApiFailure(404, f"unknown decision {decision!r}", [])
    await console.api(request, session).post(f"/incidents/{run_id}/{decision}")
    return back("/ui/incidents", run=run_id, done=f"{decision}: run {run_id}")


@router.post("/ui/sandboxes")
async def create_sandbox(request: Request) -> Response:
    console = console_of(request)
    session, form = await console.writer(request)
    namespace = str(form.get("namespace") or "default")
    name = str(form.get("name") or "")
    overrides: list[dict[str, Any]] = []
    for backend in (str(b) for b in form.getlist("override")):
        # endpoints for this backend ("host:port", comma-separated), or none: `local`
        addresses = [a.strip() for a in str(form.get(f"address.{backend}") or "").split(",")]
        if any(addresses):
            overrides.append(
                {"backend": backend, "endpoints": [{"address": a} for a in addresses if a]}
            )
        else:
            overrides.append({"backend": backend, "local": {}})
    if not overrides:
        raise ApiFailure(400, "pick at least one backend to override", [])
    spec: dict[str, Any] = {"overrides": overrides}
    for field in ("ttl", "routingKey"):
        value = str(form.get(field) or "").strip()
        if value:
            spec[field] = value
    manifest = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    await console.api(request, session).post(f"/namespaces/{namespace}/sandboxes", manifest)
    return back("/ui/sandboxes", done=f"created: sandbox {namespace}/{name}")


@router.post("/ui/sandboxes/{namespace}/{name}/delete")
async def delete_sandbox(request: Request, namespace: str, name: str) -> Response:
    console = console_of(request)
    session, _ = await console.writer(request)
    await console.api(request, session).call("DELETE", f"/namespaces/{namespace}/sandboxes/{name}")
    return back("/ui/sandboxes", done=f"deleted: sandbox {namespace}/{name}")


@router.post("/ui/config/{namespace}/{plural}/{name}")
async def save_object(request: Request, namespace: str, plural: str, name: str) -> Response:
    """Save edited YAML through ``POST /apply`` (YAML body: problems carry lines)."""
    console = console_of(request)
    session, form = await console.writer(request)
    text = str(form.get("yaml") or "")
    try:
        await console.api(request, session).call(
            "POST", "/apply", content=text, content_type="application/yaml"
        )
    except ApiFailure as exc:
        if exc.status not in (400, 422):
            raise
        problems = exc.problems or [{"line": None, "path": "", "message": exc.message}]
        bad = {p.get("line") for p in problems if p.get("line")}
        return console.render(
            request, "object.html", session, status=exc.status, obj=_loaded(text), text=text,
            lines=text.splitlines(), bad=bad, problems=problems, plural=plural,
            namespace=namespace, name=name, obj_status=None, done="",
        )  # fmt: skip
    return back(f"/ui/config/{namespace}/{plural}/{name}", done="saved")


def _loaded(text: str) -> dict[str, Any]:
    try:
        found = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return found if isinstance(found, dict) else {}


@router.post("/ui/rollback")
async def rollback(request: Request) -> Response:
    console = console_of(request)
    session, form = await console.writer(request)
    revision = str(form.get("revision") or "")
    if not revision.isdigit():
        raise ApiFailure(400, f"revision {revision!r} is not a number", [])
    await console.api(request, session).post("/rollback", {"revision": int(revision)})
    return back("/ui/revisions", done=f"rolled back to revision {revision}")


@router.post("/ui/explain")
async def explain(request: Request) -> Response:
    """ "Try a request": the API's ``explain`` (a read, but a POST: CSRF-checked too)."""
    console = console_of(request)
    session, form = await console.writer(request)
    headers: dict[str, str] = {}
    for line in str(form.get("headers") or "").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip()] = v.strip()
    body = {
        "method": str(form.get("method") or "GET"),
        "url": str(form.get("url") or ""),
        "headers": headers,
    }
    try:
        result = await console.api(request, session).post("/explain", body)
        error = ""
    except ApiFailure as exc:
        result, error = None, exc.message
    return console.render(
        request, "explain.html", session, result=result, error=error, body=body,
        pretty=yaml.safe_dump(result, sort_keys=False) if result else "",
    )  # fmt: skip


@router.post("/ui/tokens")
async def create_token(request: Request) -> Response:
    """A new token: its secret is on this one page and nowhere else (as in the API)."""
    console = console_of(request)
    session, form = await console.writer(request)
    api = console.api(request, session)
    body: dict[str, Any] = {
        "name": str(form.get("name") or ""),
        "role": str(form.get("role") or "viewer"),
        "namespaces": [
            n.strip() for n in str(form.get("namespaces") or "").split(",") if n.strip()
        ],
    }
    if str(form.get("ttl") or "").strip():
        body["ttl"] = str(form.get("ttl")).strip()
    created = await api.post("/tokens", body)
    items = (await api.get("/tokens"))["items"]
    return console.render(
        request, "tokens.html", session, items=items, created=created,
        done=f"created: token {created['name']}",
    )  # fmt: skip


@router.post("/ui/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: str) -> Response:
    console = console_of(request)
    session, _ = await console.writer(request)
    await console.api(request, session).call("DELETE", f"/tokens/{token_id}")
    return back("/ui/tokens", done=f"revoked: token {token_id}")
