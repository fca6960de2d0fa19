"""``GET /watch``: a newline-delimited JSON stream of object changes.

The subscription is registered before the current objects are sent, so no change can
fall between the listing and the stream. A ``BOOKMARK`` line follows the listing and
repeats every 30 s, which keeps idle proxies from closing the stream. A client that
reads too slowly to keep 1024 events queued is cut off (it re-lists when it reconnects).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from turnout.control.api.deps import Control, Viewer
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.objects import KIND_INFO

router = APIRouter(tags=["watch"], responses=FAILURES)
BOOKMARK_SECONDS = 30.0


@router.get("/watch", response_class=StreamingResponse)
async def watch(
    request: Request,
    control: Control,
    principal: Viewer,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    namespace: Annotated[str | None, Query(max_length=253)] = None,
    initial: Annotated[bool, Query()] = True,
) -> StreamingResponse:
    """Stream ``{"type": "ADDED|MODIFIED|DELETED|BOOKMARK", "object", "revision"}`` lines."""
    if kind is not None and kind not in KIND_INFO:
        raise ApiError(400, f"unknown kind {kind!r}; known: {', '.join(KIND_INFO)}")
    watcher = control.subscribe(principal, kind, namespace)

    def line(doc: object) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"

    async def stream() -> AsyncIterator[bytes]:
        try:
            if initial:
                for key, entry in sorted(control.view.items()):
                    if watcher.wants(key):
                        yield line(
                            {
                                "type": "ADDED",
                                "object": control.render(entry),
                                "revision": control.store_revision,
                            }
                        )
            yield line({"type": "BOOKMARK", "revision": control.store_revision})
            while True:
                try:
                    async with asyncio.timeout(BOOKMARK_SECONDS):
                        ev = await watcher.queue.get()
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield line({"type": "BOOKMARK", "revision": control.store_revision})
                    continue
                if ev is None:
                    if watcher.overflowed:
                        yield line(
                            {
                                "type": "ERROR",
                                "message": "watch fell behind; re-list and watch again",
                            }
                        )
                    return
                live = control.view.get(ev.key)
                obj = (
                    control.render(live)
                    if live is not None and ev.type != "DELETED"
                    else ev.manifest
                )
                yield line({"type": ev.type, "object": obj, "revision": ev.revision})
        finally:
            control.unsubscribe(watcher)

    return StreamingResponse(stream(), media_type="application/x-ndjson")
