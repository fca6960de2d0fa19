"""The console's pages (reads): each asks the admin API and renders one template.

Every handler is ``console.session`` (or the login page) → ``ConsoleApi`` GETs →
``console.render``. A refusal of the API (403 for a viewer on the audit log, 404 for
a missing object) renders the error page with the API's status and message.
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from turnout.config.kinds import REGISTRY
from turnout.control.console.client import ApiFailure, ConsoleApi
from turnout.control.console.web import HEADERS, Console

router = APIRouter(include_in_schema=False)

# The routes page: Gateways, then every route kind (from the kinds registry), then Backends.
_BY_KIND = {e.kind: e for e in REGISTRY if e.served}
ROUTING_KINDS = tuple(
    (e.plural, e.kind)
    for e in REGISTRY
    if e.served and (e.kind == "Gateway" or e.listener_protocols)
)
BACKENDS = (_BY_KIND["Backend"].plural, "Backend")


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _page(request: Request) -> tuple[Console, Any, ConsoleApi]:
    console = console_of(request)
    session = console.session(request)
    return console, session, console.api(request, session)


@router.get("/ui/login")
async def login_page(request: Request, error: str = "") -> Response:
    return console_of(request).render(request, "login.html", None, error=error)


@router.get("/ui")
@router.get("/ui/")
async def overview(request: Request) -> Response:
    console, session, api = _page(request)
    console.live.tick()
    status = await api.get("/status")
    ready = await api.probe("/readyz")
    incidents = (await api.get("/incidents", active="true", limit=20))["items"]
    releases = (await api.get("/releases"))["items"]
    sandboxes = (await api.get("/sandboxes"))["items"]
    return console.render(
        request, "overview.html", session, api_status=status, ready=ready, incidents=incidents,
        releases=releases, sandboxes=sandboxes, rows=console.live.table(),
        gauges=console.live.gauges(),
    )  # fmt: skip


@router.get("/ui/live/table")
async def live_table(request: Request) -> Response:
    console = console_of(request)
    session = console.session(request)
    console.live.tick()
    return console.render(
        request, "live_table.html", session, rows=console.live.table(),
        gauges=console.live.gauges(),
    )  # fmt: skip


@router.get("/ui/live/series")
async def live_series(request: Request) -> Response:
    console = console_of(request)
    console.session(request)
    console.live.tick()
    return JSONResponse(console.live.series(), headers=HEADERS)


@router.get("/ui/routes")
async def routes(request: Request) -> Response:
    console, session, api = _page(request)
    found: dict[str, list[Any]] = {}
    for plural, _ in (*ROUTING_KINDS, BACKENDS):
        found[plural] = (await api.get(f"/{plural}"))["items"]
    status = await api.get("/status")
    return console.render(
        request, "routes.html", session, found=found, api_status=status, sections=ROUTING_KINDS
    )


@router.get("/ui/sandboxes")
async def sandboxes(request: Request, key: str = "") -> Response:
    console, session, api = _page(request)
    items = (await api.get("/sandboxes"))["items"]
    backends = (await api.get("/backends"))["items"]
    listeners = (await api.probe("/readyz")).get("listeners") or []
    return console.render(
        request, "sandboxes.html", session, items=items, backends=backends, key=key,
        listener=listeners[0] if listeners else "",
        done=request.query_params.get("done", ""),
    )  # fmt: skip


@router.get("/ui/sandboxes/stream")
async def sandbox_stream(request: Request, key: str) -> Response:
    console, session, api = _page(request)
    try:
        found = await api.get("/trace", key=key)
    except ApiFailure as exc:
        found = {"items": [], "error": exc.message}
    return console.render(request, "stream.html", session, found=found, key=key)


@router.get("/ui/releases")
async def releases(request: Request) -> Response:
    console, session, api = _page(request)
    views = []
    for item in (await api.get("/releases"))["items"]:
        meta = item["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        state = await api.get(f"/namespaces/{ns}/releases/{name}/state")
        numbers = await api.get(f"/namespaces/{ns}/releases/{name}/measurements")
        depends = (item.get("spec") or {}).get("dependsOn") or []
        views.append({"item": item, "view": state, "numbers": numbers, "depends": depends})
    queues = (await api.get("/release-queues"))["items"]
    return console.render(
        request, "releases.html", session, views=views, queues=queues,
        done=request.query_params.get("done", ""),
    )  # fmt: skip


@router.get("/ui/incidents")
async def incidents(request: Request, run: str = "") -> Response:
    console, session, api = _page(request)
    items = (await api.get("/incidents", limit=100))["items"]
    pending = (await api.get("/incidents/approvals"))["items"]
    detail = await api.get(f"/incidents/{run}") if run else None
    ranking: list[Any] = []
    if detail is not None:  # the runbooks' track record for this kind of alert
        labels = (detail.get("alertDetail") or {}).get("labels") or {}
        ranking = (await api.post("/remediation/rank", {"labels": labels}))["items"]
    return console.render(
        request, "incidents.html", session, items=items, pending=pending, detail=detail,
        ranking=ranking,
        done=request.query_params.get("done", ""),
    )  # fmt: skip


@router.get("/ui/traces")
async def traces(request: Request, id: str = "", key: str = "") -> Response:
    console, session, api = _page(request)
    trace = None
    recent: dict[str, Any] = {"items": []}
    error = ""
    try:
        if id:
            trace = await api.get(f"/trace/requests/{id}")
        if key:
            recent = await api.get("/trace", key=key)
    except ApiFailure as exc:
        error = exc.message
    return console.render(
        request, "traces.html", session, trace=trace, recent=recent, id=id, key=key,
        error=error, spans=_waterfall(trace),
    )  # fmt: skip


def _waterfall(trace: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The request and its upstream attempts as bars: offset and width in % of the request."""
    found = (trace or {}).get("request") or {}
    total = float(found.get("durationMs") or 0.0)
    if not found:
        return []
    span = max(total, 1e-6)
    target = found.get("path") or found.get("target", "")
    bars = [
        {
            "label": f"{found.get('method', '')} {target}",
            "detail": f"{found.get('route', '')} → {found.get('backend', '')}",
            "status": found.get("status", ""),
            "left": 0.0,
            "width": 100.0,
            "ms": total,
        }
    ]
    for n, a in enumerate(found.get("attempts") or [], 1):
        start, took = float(a.get("startMs") or 0.0), float(a.get("durationMs") or 0.0)
        bars.append(
            {
                "label": f"attempt {n}",
                "detail": f"{a.get('endpoint', '')} {a.get('error') or ''}".strip(),
                "status": a.get("status", ""),
                "left": round(min(start / span, 1.0) * 100, 2),
                "width": max(round(took / span * 100, 2), 0.5),
                "ms": took,
            }
        )
    return bars


@router.get("/ui/config")
async def config(request: Request, plural: str = "httproutes") -> Response:
    console, session, api = _page(request)
    kinds = (await api.get("/kinds"))["items"]
    items = (await api.get(f"/{plural}"))["items"]
    return console.render(request, "config.html", session, kinds=kinds, items=items, plural=plural)


@router.get("/ui/config/{namespace}/{plural}/{name}")
async def config_object(request: Request, namespace: str, plural: str, name: str) -> Response:
    console, session, api = _page(request)
    path = f"/{plural}/{name}" if namespace == "_" else f"/namespaces/{namespace}/{plural}/{name}"
    obj = await api.get(path)
    status = obj.pop("status", None)
    meta = obj.get("metadata") or {}
    for server_field in ("resourceVersion", "generation", "creationTimestamp", "uid"):
        meta.pop(server_field, None)
    text = yaml.safe_dump(obj, sort_keys=False)
    return console.render(
        request, "object.html", session, obj=obj, text=text, obj_status=status, plural=plural,
        namespace=namespace, name=name, problems=[], lines=text.splitlines(),
        done=request.query_params.get("done", ""),
    )  # fmt: skip


@router.get("/ui/revisions")
async def revisions(request: Request, show: int = 0) -> Response:
    console, session, api = _page(request)
    items = (await api.get("/revisions", limit=50))["items"]
    diff = await api.get(f"/revisions/{show}/diff") if show else None
    return console.render(
        request, "revisions.html", session, items=items, show=show,
        diff=(diff or {}).get("diff", ""),
        done=request.query_params.get("done", ""),
    )  # fmt: skip


@router.get("/ui/audit")
async def audit(request: Request) -> Response:
    console, session, api = _page(request)
    items = (await api.get("/audit", limit=200))["items"]
    return console.render(request, "audit.html", session, items=items)


@router.get("/ui/tokens")
async def tokens(request: Request) -> Response:
    console, session, api = _page(request)
    items = (await api.get("/tokens"))["items"]
    return console.render(request, "tokens.html", session, items=items)
