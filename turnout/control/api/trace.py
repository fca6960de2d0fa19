"""``GET /trace``: the recent requests that carried one sandbox routing key;
``GET /trace/requests/{id}``: the hops of one request (``observe.history.find``).

Answers from this replica's ``observe.history`` (fed by its workers once a second), so
behind a load balancer over several replicas each shows the requests it served. With
``follow=true`` the answer is a newline-delimited JSON stream: the recent requests,
then each new one as it arrives (polled every 250 ms; an empty ``{"type": "HEARTBEAT"}``
line every 15 s keeps idle proxies from closing it).

A token limited to namespaces sees the keys of Sandboxes and RouteGroups in those
namespaces only, and the requests of routes in those namespaces.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from turnout.config.sandboxes import derived_key
from turnout.control.api.deps import Control, Viewer, forbid
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.auth import Principal
from turnout.control.service import KEYED_KINDS, ControlPlane
from turnout.core.routing_keys import valid_key

router = APIRouter(tags=["sandboxes"], responses=FAILURES)
POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0


def key_owner(control: ControlPlane, key: str) -> tuple[str, str, str] | None:
    """The Sandbox or RouteGroup whose routing key is ``key``."""
    for (kind, ns, name), entry in control.view.items():
        if kind not in KEYED_KINDS:
            continue
        spec = entry.manifest.get("spec") or {}
        if (spec.get("routingKey") or derived_key(kind, ns, name)) == key:
            return kind, ns, name
    return None


async def _check_scope(
    control: ControlPlane, request: Request, principal: Principal, key: str
) -> dict[str, Any] | None:
    owner = key_owner(control, key)
    if principal.scoped and (owner is None or not principal.sees_namespace(owner[1])):
        await forbid(
            control,
            request,
            principal,
            f"token {principal.name!r} is limited to namespaces; routing key {key!r} "
            "belongs to none of them",
        )
    if owner is None:
        return None
    return {"kind": owner[0], "namespace": owner[1], "name": owner[2]}


@router.get("/trace", response_model=None)
async def trace(
    request: Request,
    control: Control,
    principal: Viewer,
    key: Annotated[str, Query(min_length=1, max_length=63)],
    after: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    follow: Annotated[bool, Query()] = False,
) -> dict[str, Any] | StreamingResponse:
    """The latest ``limit`` requests with routing key ``key`` (sequence above ``after``)."""
    if not valid_key(key):
        raise ApiError(400, f"{key!r} is not a valid routing key")
    owner = await _check_scope(control, request, principal, key)
    history = control.history
    if history is None:
        raise ApiError(503, "this server keeps no request history")
    items = history.recent(key, after, limit)
    if not follow:
        return {"key": key, "owner": owner, "items": items}

    def line(doc: object) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"

    async def stream() -> AsyncIterator[bytes]:
        seen = after
        for item in items:
            seen = item["seq"]
            yield line({"type": "REQUEST", "request": item})
        quiet = 0.0
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if await request.is_disconnected():
                return
            fresh = history.recent(key, seen, 0)
            for item in fresh:
                seen = item["seq"]
                yield line({"type": "REQUEST", "request": item})
            quiet = 0.0 if fresh else quiet + POLL_SECONDS
            if quiet >= HEARTBEAT_SECONDS:
                quiet = 0.0
                yield line({"type": "HEARTBEAT"})

    return StreamingResponse(stream(), media_type="application/x-ndjson")


@router.get("/trace/requests/{request_id}")
async def request_flow(
    request: Request,
    control: Control,
    principal: Viewer,
    request_id: Annotated[str, Path(min_length=1, max_length=200)],
) -> dict[str, Any]:
    """One request's hops: listener, route, backend, sandbox override, each upstream
    attempt with its timing (requests that were traced, or carried a routing key)."""
    history = control.history
    if history is None:
        raise ApiError(503, "this server keeps no request history")
    found = history.find(request_id)
    if found is None:
        raise ApiError(
            404,
            f"no request {request_id!r} is remembered by this server: only traced requests "
            "(turnout serve --trace-endpoint; sampled, or errors) and requests with a routing "
            "key are kept, the latest 10000",
        )
    route = found.get("route") or ""
    namespace = route.split("/", 1)[0] if "/" in route else ""
    if principal.scoped and not (namespace and principal.sees_namespace(namespace)):
        await forbid(
            control,
            request,
            principal,
            f"token {principal.name!r} is limited to namespaces; request {request_id!r} "
            "was served by a route in none of them",
        )
    return {"request": found}
