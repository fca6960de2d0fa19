"""Where a worker keeps its caches: one ``CacheZone`` per TrafficPolicy with ``cache``.

A zone holds the memory tier, the misses in flight (request coalescing) and plain
counters; zones outlive snapshots (``CacheStores`` keys them by policy name), so a reload
that keeps the policy keeps its stored responses. ``CacheStores`` also owns the worker's
Redis tier (``shared.RedisCache``), when Turnout runs with ``--redis``, and the task that
follows the purge channel and applies each purge to every zone's memory.

Coalescing: the first miss of a key is its *leader* and goes upstream; later misses of the
same key while it is in flight wait (bounded by ``coalesceTimeout``) for the leader's
stored response, and go upstream themselves only if the leader's response was not
storable, failed or did not come in time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from turnout.core.tasks import spawn
from turnout.proxy.cache.shared import RedisCache, parse_purge
from turnout.proxy.cache.store import Entry, MemoryCache

log = logging.getLogger("turnout.cache")

# Counter indices of ``CacheZone.counts`` (exported as turnout_cache_requests_total).
HIT: Final = 0  # answered from the store, fresh
MISS: Final = 1  # went upstream, nothing usable stored
STALE: Final = 2  # answered with a stale response (while revalidating, or on error)
BYPASS: Final = 3  # not cacheable by request (method, Authorization, no-store)
REVALIDATED: Final = 4  # a stale response confirmed by a 304 from upstream
COALESCED: Final = 5  # a miss answered by another request's fetch
STORED: Final = 6  # responses stored
REDIS_HIT: Final = 7  # of HIT/STALE/REVALIDATED, found in Redis (not in memory)
OUTCOMES: Final = (
    "hit",
    "miss",
    "stale",
    "bypass",
    "revalidated",
    "coalesced",
    "stored",
    "redis_hit",
)


class Flight:
    """A miss in flight: the followers waiting for its response."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[Entry | None]] = []


class CacheZone:
    __slots__ = ("counts", "flights", "memory", "name")

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.memory = MemoryCache(capacity)
        self.flights: dict[bytes, Flight] = {}
        self.counts = [0] * len(OUTCOMES)

    def land(self, key: bytes, entry: Entry | None) -> None:
        """The leader of ``key`` is done: hand its stored response (or None) to followers."""
        flight = self.flights.pop(key, None)
        if flight is None:
            return
        for waiter in flight.waiters:
            if not waiter.done():
                waiter.set_result(entry)

    def export(self) -> dict[str, int]:
        out = dict(zip(OUTCOMES, self.counts, strict=True))
        out["entries"] = len(self.memory)
        out["bytes"] = self.memory.size
        out["evictions"] = self.memory.evictions
        return out


class CacheStores:
    """A worker's zones (by policy) and its Redis tier (None: memory only)."""

    __slots__ = ("_listener", "redis", "zones")

    def __init__(self, redis: RedisCache | None = None) -> None:
        self.redis = redis
        self.zones: dict[str, CacheZone] = {}
        self._listener: asyncio.Task[None] | None = None

    def zone(self, name: str, capacity: int) -> CacheZone:
        zone = self.zones.get(name)
        if zone is None:
            zone = self.zones[name] = CacheZone(name, capacity)
        elif zone.memory.capacity != capacity:
            zone.memory.capacity = capacity  # shrinking evicts on the next store
        return zone

    def purge(
        self, keys: tuple[bytes, ...], prefixes: tuple[bytes, ...], tags: tuple[bytes, ...]
    ) -> int:
        """Drop matching keys from every zone's memory; the number dropped."""
        return sum(z.memory.purge(keys, prefixes, tags) for z in self.zones.values())

    def on_purge_message(self, data: bytes) -> None:
        try:
            keys, prefixes, tags = parse_purge(data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("cache: a malformed purge message was ignored: %r", exc)
            return
        self.purge(keys, prefixes, tags)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Follow the purge channel (with Redis) for the life of the worker."""
        if self.redis is not None and self._listener is None:
            self._listener = spawn(self.redis.listen(self.on_purge_message), loop=loop)

    async def aclose(self) -> None:
        listener = self._listener
        self._listener = None
        if listener is not None:
            listener.cancel()
            try:
                await listener
            except asyncio.CancelledError:
                pass
        if self.redis is not None:
            await self.redis.aclose()

    def export(self) -> dict[str, dict[str, int]]:
        return {name: zone.export() for name, zone in self.zones.items()}
