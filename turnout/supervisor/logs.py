"""``GET /api/v1/logs``: the merged access log of this replica's workers, with events.

The supervisor owns the ring (``observe.logring``): workers' lines arrive with their
stats, and ``EventHandler`` copies the supervisor's and control plane's own INFO+ log
records (tunnels attached and ended, sandboxes expired, reloads served or rejected)
into the same stream. Filters: ``route``, ``status`` (``5xx`` or a code), ``key``,
``consumer``, ``since`` (Unix time). With ``follow=true`` the answer is NDJSON: the
recent entries, then each new one (polled every 250 ms, a heartbeat line every 15 s).
Replicas each answer for themselves; merging replicas is not done here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from turnout.control.api.deps import Viewer
from turnout.control.api.errors import FAILURES, ApiError
from turnout.observe.logring import LogFilter, LogRing

POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
STATUS_FILTERS = {f"{d}xx" for d in "12345"}
# Where operator-facing events come from (their records also go to stderr as usual).
EVENT_LOGGERS = ("turnout.control", "turnout.supervisor")


class EventHandler(logging.Handler):
    """Copies INFO+ log records into the ring as ``event`` entries."""

    def __init__(self, ring: LogRing) -> None:
        super().__init__(logging.INFO)
        self.ring = ring

    def emit(self, record: logging.LogRecord) -> None:
        try:
            kind = record.name.rpartition(".")[2]
            self.ring.add_event(kind, record.getMessage(), level=record.levelname.lower())
        except Exception:  # a log handler must never raise into its caller
            self.handleError(record)


def install_event_handler(ring: LogRing) -> EventHandler:
    handler = EventHandler(ring)
    for name in EVENT_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    return handler


def remove_event_handler(handler: EventHandler) -> None:
    for name in EVENT_LOGGERS:
        logging.getLogger(name).removeHandler(handler)


def logs_router(ring: LogRing) -> APIRouter:
    router = APIRouter(tags=["observability"], responses=FAILURES)

    @router.get("/logs", response_model=None)
    async def logs(
        request: Request,
        _: Viewer,
        route: Annotated[str, Query(max_length=300)] = "",
        status: Annotated[str, Query(max_length=3)] = "",
        key: Annotated[str, Query(max_length=63)] = "",
        consumer: Annotated[str, Query(max_length=300)] = "",
        since: Annotated[float, Query(ge=0)] = 0.0,
        after: Annotated[int, Query(ge=0, le=2**53)] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        follow: Annotated[bool, Query()] = False,
    ) -> dict[str, Any] | StreamingResponse:
        """The latest ``limit`` access-log lines and events of this replica that match."""
        if status and status not in STATUS_FILTERS and not (status.isdigit() and len(status) == 3):
            raise ApiError(400, f"status: {status!r} is not a status code or a class like 5xx")
        flt = LogFilter(route, status, key, consumer, since)
        items = ring.recent(flt, after, limit)
        if not follow:
            return {"items": items, "dropped": ring.dropped}
        return StreamingResponse(
            _follow(request, ring, flt, items, after), media_type="application/x-ndjson"
        )

    return router


async def _follow(
    request: Request, ring: LogRing, flt: LogFilter, items: list[dict[str, Any]], after: int
) -> AsyncIterator[bytes]:
    def line(doc: object) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"

    seen = after
    for item in items:
        seen = item["seq"]
        yield line(item)
    quiet = 0.0
    while True:
        await asyncio.sleep(POLL_SECONDS)
        if await request.is_disconnected():
            return
        fresh = ring.recent(flt, seen, 0)
        for item in fresh:
            seen = item["seq"]
            yield line(item)
        quiet = 0.0 if fresh else quiet + POLL_SECONDS
        if quiet >= HEARTBEAT_SECONDS:
            quiet = 0.0
            yield line({"type": "heartbeat"})
