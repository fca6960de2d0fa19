"""``POST /api/v1/explain``: how the revision being served would route one request.

The control plane may not import the data plane, so this endpoint lives with the
supervisor, the one layer that sees both: it compiles the revision the workers serve
with the same builder and settings as its trial build (``proxy.explain``), adds the
active health checks' verdicts, and answers. Nothing is sent anywhere; a viewer token
suffices. Compiling takes as long as a reload's trial build, which is why it runs in a
thread: the admin loop is also the supervisor's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from turnout.control.api.deps import Viewer
from turnout.control.api.errors import FAILURES, ApiError
from turnout.proxy.explain import ExplainError, ExplainRequest

# Bounds an explain call: the compile of a very large revision, or a stuck thread.
EXPLAIN_TIMEOUT = 30.0


@runtime_checkable
class ExplainSource(Protocol):
    def explain(self, request: ExplainRequest) -> Callable[[], dict[str, Any]]: ...


class ExplainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Annotated[str, Field(min_length=1, max_length=20)] = "GET"
    url: Annotated[str, Field(min_length=1, max_length=8192)]
    headers: Annotated[dict[str, str], Field(max_length=100)] = {}


def explain_router(source: ExplainSource) -> APIRouter:
    router = APIRouter(tags=["observability"], responses=FAILURES)

    @router.post("/explain")
    async def explain(body: ExplainBody, _: Viewer) -> dict[str, Any]:
        """Which listener, route, rule, filters, backends and endpoints a request would
        get from the revision being served, and why every other route match did not."""
        request = ExplainRequest(body.method, body.url, list(body.headers.items()))
        try:
            async with asyncio.timeout(EXPLAIN_TIMEOUT):
                return await asyncio.to_thread(source.explain(request))
        except ExplainError as exc:
            raise ApiError(400, str(exc)) from None
        except TimeoutError:
            raise ApiError(503, f"explain took longer than {EXPLAIN_TIMEOUT:g} s") from None

    return router
