"""``POST /api/v1/cache/purge``: drop stored responses on every worker and replica.

The control plane may not import the data plane, so, like ``explain``, this endpoint
lives with the supervisor. A purge names keys exactly, key prefixes (``host/path``
prefixes: keys are ``host`` + ``path`` [+ ``?query``] as the cache builds them) or tags
(from the responses' ``Cache-Tag`` field). The supervisor sends it to each of its workers
(``PurgeCache``), and with ``--redis`` deletes the keys from the shared tier and
publishes the purge on the channel every worker of every replica follows
(``proxy/cache/shared.py``). An editor token is needed: a purge changes what clients get.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from turnout.control.api.deps import Editor
from turnout.control.api.errors import FAILURES, ApiError

Names = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=8192)]], Field(max_length=1000)
]


@runtime_checkable
class CacheSource(Protocol):
    async def purge_cache(
        self, keys: tuple[bytes, ...], prefixes: tuple[bytes, ...], tags: tuple[bytes, ...]
    ) -> dict[str, Any]: ...


class PurgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: Names = []
    prefixes: Names = []
    tags: Names = []
    all: bool = False  # everything (the empty prefix)


def cache_router(source: CacheSource) -> APIRouter:
    router = APIRouter(tags=["cache"], responses=FAILURES)

    @router.post("/cache/purge")
    async def purge(body: PurgeBody, _: Editor) -> dict[str, Any]:
        """Purge stored responses by key, prefix or tag, on every worker and replica."""
        prefixes = [""] if body.all else body.prefixes
        if not (body.keys or prefixes or body.tags):
            raise ApiError(400, "name keys, prefixes or tags to purge (or all: true)")

        def enc(values: list[str]) -> tuple[bytes, ...]:
            return tuple(v.encode("utf-8") for v in values)

        result = await source.purge_cache(enc(body.keys), enc(prefixes), enc(body.tags))
        if result.get("error"):
            raise ApiError(503, str(result["error"]))
        return result

    return router
