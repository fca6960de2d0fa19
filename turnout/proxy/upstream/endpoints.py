"""Upstream endpoints and their name resolution.

An ``Endpoint`` is one address a backend can send to: an IP literal, a DNS name, or a
unix socket. Names are resolved asynchronously (``loop.getaddrinfo`` runs in the
default executor, so the loop never blocks) and cached per worker for ``ttl`` seconds;
``getaddrinfo`` exposes no record TTL, so the cache lifetime is a setting. A failed
lookup is cached briefly too (negative caching), so a dead name cannot turn every
request into a resolver call. Resolution has a bounded timeout.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING, Final

from turnout.proxy.upstream.errors import ResolutionError

if TYPE_CHECKING:
    from turnout.proxy.upstream.health import EndpointHealth
    from turnout.proxy.upstream.pool import EndpointPool


class Endpoint:
    """One upstream address; the key under which its connection pool is kept."""

    __slots__ = ("address", "health", "key", "pool", "weight")

    def __init__(self, pool: EndpointPool, weight: int = 1) -> None:
        self.pool = pool
        self.address = pool.address
        self.key = pool.key
        self.weight = weight
        self.health: EndpointHealth = pool.health

    def __repr__(self) -> str:
        return f"<Endpoint {self.key} w={self.weight}>"


_NEGATIVE_TTL: Final = 2.0


class Resolver:
    """Caches ``getaddrinfo`` answers per ``(host, port)``."""

    def __init__(self, ttl: float = 30.0, timeout: float = 5.0) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self._cache: dict[tuple[str, int], tuple[float, list[tuple[str, int]] | str]] = {}
        self._inflight: dict[tuple[str, int], asyncio.Future[list[tuple[str, int]]]] = {}

    async def resolve(self, host: str, port: int) -> list[tuple[str, int]]:
        key = (host, port)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            answer = hit[1]
            if isinstance(answer, str):
                raise ResolutionError(answer)
            return answer
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[tuple[str, int]]] = loop.create_future()
        self._inflight[key] = fut
        try:
            addrs = await self._lookup(host, port)
        except ResolutionError as exc:
            self._cache[key] = (time.monotonic() + _NEGATIVE_TTL, str(exc))
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            self._cache[key] = (time.monotonic() + self.ttl, addrs)
            fut.set_result(addrs)
            return addrs
        finally:
            del self._inflight[key]

    async def _lookup(self, host: str, port: int) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise ResolutionError(f"resolving {host!r} timed out") from None
        except OSError as exc:
            raise ResolutionError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
        addrs: list[tuple[str, int]] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            pair = (str(sockaddr[0]), int(sockaddr[1]))
            if pair not in addrs:
                addrs.append(pair)
        if not addrs:
            raise ResolutionError(f"{host!r} has no addresses")
        return addrs
