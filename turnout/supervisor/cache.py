"""``POST /api/v1/cache/purge``: drop stored responses on every worker and replica.

The control plane may not import the data plane, so, like ``explain``, this endpoint
lives with the supervisor. A purge names keys exactly, key prefixes (``host/path``
prefixes: keys are ``host`` + ``path`` [+ ``?query``] as the cache builds them) or tags
(from the responses' ``Cache-Tag`` field). The supervisor sends it to each of its workers
(``PurgeCache``), and with ``--redis`` (``CachePurger``) deletes the keys from the shared tier and
publishes the purge on the channel every worker of every replica follows
(``proxy/cache/shared.py``). An editor token is needed: a purge changes what clients get.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from turnout.control.api.deps import Editor
from turnout.control.api.errors import FAILURES, ApiError
from turnout.proxy.cache.shared import RedisCache
from turnout.proxy.messages import PurgeCache

Names = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=8192)]], Field(max_length=1000)
]


class _Worker(Protocol):
    channel: object | None

    def send(self, msg: PurgeCache) -> None: ...


class _Options(Protocol):
    redis: str


@runtime_checkable
class CacheSource(Protocol):
    """What of the supervisor a purge needs: its workers and its ``--redis``."""

    workers: Mapping[int, _Worker]
    options: _Options


class CachePurger:
    """Sends a purge to this replica's workers, then (with Redis) to the shared tier and,
    through its channel, every replica's workers."""

    def __init__(self, source: CacheSource) -> None:
        self.source = source
        self.redis: RedisCache | None = None

    async def purge(
        self, keys: tuple[bytes, ...], prefixes: tuple[bytes, ...], tags: tuple[bytes, ...]
    ) -> dict[str, Any]:
        sent = 0
        for worker in list(self.source.workers.values()):
            if worker.channel is not None:
                worker.send(PurgeCache(keys, prefixes, tags))
                sent += 1
        result: dict[str, Any] = {"workers": sent, "redis": None}
        url = self.source.options.redis
        if url:
            if self.redis is None or self.redis.url != url:
                self.redis = RedisCache(url)
            try:
                result["redis"] = {"deleted": await self.redis.purge(keys, prefixes, tags)}
            except (RedisError, OSError, TimeoutError) as exc:
                result["error"] = (
                    f"purged on this replica's {sent} workers, but not in Redis nor on other "
                    f"replicas: Redis failed ({exc!r}); retry"
                )
        return result


class PurgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: Names = []
    prefixes: Names = []
    tags: Names = []
    all: bool = False  # everything (the empty prefix)


def cache_router(source: CacheSource) -> APIRouter:
    router = APIRouter(tags=["cache"], responses=FAILURES)
    purger = CachePurger(source)

    @router.post("/cache/purge")
    async def purge(body: PurgeBody, _: Editor) -> dict[str, Any]:
        """Purge stored responses by key, prefix or tag, on every worker and replica."""
        prefixes = [""] if body.all else body.prefixes
        if not (body.keys or prefixes or body.tags):
            raise ApiError(400, "name keys, prefixes or tags to purge (or all: true)")

        def enc(values: list[str]) -> tuple[bytes, ...]:
            return tuple(v.encode("utf-8") for v in values)

        result = await purger.purge(enc(body.keys), enc(prefixes), enc(body.tags))
        if result.get("error"):
            raise ApiError(503, str(result["error"]))
        return result

    return router
