"""The shared tier: stored responses in Redis, seen by every worker and replica.

Layout (``P`` = ``turnout:cache:``):

* ``P k:<primary key>`` — a hash: field ``vary`` (the Vary names, "\\n"-joined, "" when
  none) and one field per variant, ``v:<digest of the Vary values>`` (``v:`` alone
  without Vary), each an ``Entry.dump()``. A lookup is one ``HMGET key vary v:``, and a
  second ``HGET`` only for a response with Vary. The key expires with the entry's
  usefulness: lifetime + the longer stale window, at least ``KEEP`` (validators make
  a stale entry worth keeping for a conditional request).
* ``P t:<tag>`` — a set of the keys tagged (purge by tag), expiring like the longest.
* channel ``P purge`` — purges are published here (JSON ``{"keys", "prefixes",
  "tags"}``); every worker of every replica subscribed drops the same keys from memory.

**Bounded time.** Every call runs under ``asyncio.timeout`` (the policy's
``redisTimeout``, default 50 ms) and a ``Breaker`` (5 consecutive failures open it for
1 s), like the rate-limit store: while Redis is gone a lookup costs nothing and the
request is served from memory or upstream. Writes are fire-and-forget tasks under the
same bound; a failed write only means the next worker misses. redis-py retries are off.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from turnout.core.tasks import spawn
from turnout.proxy.cache.rfc import normalise_vary_value
from turnout.proxy.cache.store import Entry
from turnout.proxy.ratelimit.breaker import Breaker

log = logging.getLogger("turnout.cache")

PREFIX: Final = b"turnout:cache:"
CHANNEL: Final = PREFIX + b"purge"
KEEP: Final = 3600  # seconds a stale entry with validators is kept for revalidation
_WRITES: set[asyncio.Task[Any]] = set()
_GLOB_SPECIAL: Final = (b"\\", b"*", b"?", b"[", b"]")


def variant_field(values: tuple[bytes, ...]) -> bytes:
    if not values:
        return b"v:"
    return b"v:" + hashlib.blake2b(b"\x00".join(values), digest_size=16).hexdigest().encode()


def _glob_escape(text: bytes) -> bytes:
    for ch in _GLOB_SPECIAL:
        text = text.replace(ch, b"\\" + ch)
    return text


def purge_message(
    keys: tuple[bytes, ...], prefixes: tuple[bytes, ...], tags: tuple[bytes, ...]
) -> bytes:
    return json.dumps(
        {
            "keys": [k.decode("latin-1") for k in keys],
            "prefixes": [p.decode("latin-1") for p in prefixes],
            "tags": [t.decode("latin-1") for t in tags],
        }
    ).encode()


def parse_purge(data: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[bytes, ...]]:
    """Raises ``ValueError`` (or ``KeyError``/``TypeError``) on a malformed message."""
    msg = json.loads(data)

    def field(name: str) -> tuple[bytes, ...]:
        values = msg.get(name, [])
        if not isinstance(values, list):
            raise TypeError(f"{name} must be a list")
        return tuple(str(v).encode("latin-1") for v in values)

    return field("keys"), field("prefixes"), field("tags")


class RedisCache:
    """One per worker (one connection pool), created on its event loop."""

    __slots__ = ("_client", "_clock", "_pool", "breaker", "failures", "timeout", "url")

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.05,
        breaker: Breaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.breaker = breaker if breaker is not None else Breaker(5, 1.0)
        self._clock = clock
        self.failures = 0
        self._pool: ConnectionPool = ConnectionPool.from_url(
            url,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
            max_connections=64,
            health_check_interval=0,
        )
        self._client = Redis(connection_pool=self._pool)

    async def _call(self, work: Awaitable[Any], bound: float | None = None) -> Any:
        """Run ``work`` under the time bound and the breaker; None when Redis failed."""
        clock = self._clock
        breaker = self.breaker
        if not breaker.allow(clock()):
            if isinstance(work, Coroutine):
                work.close()
            return None
        try:
            async with asyncio.timeout(bound or self.timeout):
                result = await work
        except asyncio.CancelledError:
            breaker.abandoned(clock())
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            breaker.failure(clock())
            log.debug("cache: Redis call failed: %r", exc)
            return None
        breaker.success()
        return result

    async def get(
        self, key: bytes, received: dict[bytes, bytes], bound: float | None = None
    ) -> Entry | None:
        rkey = PREFIX + b"k:" + key
        found = await self._call(self._client.hmget(rkey, [b"vary", b"v:"]), bound)
        if not found or found[0] is None:
            return None
        vary_raw, plain = found
        data = plain
        if vary_raw:
            names = tuple(vary_raw.split(b"\n"))
            values = tuple(normalise_vary_value(received.get(n)) for n in names)
            data = await self._call(self._client.hget(rkey, variant_field(values)), bound)
        if not data:
            return None
        try:
            entry = Entry.load(data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("cache: a malformed entry in Redis under %r is ignored: %r", rkey, exc)
            return None
        return entry if entry.key == key else None

    def put(
        self, entry: Entry, loop: asyncio.AbstractEventLoop, timeout: float | None = None
    ) -> None:
        """Store ``entry`` in the background (bounded; a failure is only a later miss)."""
        if not self.breaker.allow(self._clock()):
            return
        spawn(self._call(self._put(entry), timeout), loop=loop, keep=_WRITES)

    async def _put(self, entry: Entry) -> None:
        f = entry.fresh
        ttl = max(int(f.lifetime - f.initial_age + max(f.swr, f.sie)) + 1, KEEP)
        rkey = PREFIX + b"k:" + entry.key
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(
            rkey,
            mapping={
                b"vary": b"\n".join(entry.vary),
                variant_field(entry.vary_values): entry.dump(),
            },
        )
        pipe.expire(rkey, ttl)
        for tag in entry.tags:
            tkey = PREFIX + b"t:" + tag
            pipe.sadd(tkey, entry.key)
            pipe.expire(tkey, ttl, gt=True)
            pipe.expire(tkey, ttl, nx=True)
        await pipe.execute()

    async def purge(
        self,
        keys: tuple[bytes, ...] = (),
        prefixes: tuple[bytes, ...] = (),
        tags: tuple[bytes, ...] = (),
        bound: float = 5.0,
    ) -> int:
        """Delete from Redis and publish for every worker's memory. Raises on failure
        (an operator asked: they must hear it did not happen)."""
        async with asyncio.timeout(bound):
            client = self._client
            doomed: set[bytes] = {PREFIX + b"k:" + k for k in keys}
            for tag in tags:
                tkey = PREFIX + b"t:" + tag
                members = await client.smembers(tkey)
                doomed.update(
                    PREFIX + b"k:" + (m if isinstance(m, bytes) else m.encode()) for m in members
                )
                doomed.add(tkey)
            for prefix in prefixes:
                pattern = PREFIX + b"k:" + _glob_escape(prefix) + b"*"
                async for found in client.scan_iter(match=pattern, count=500):
                    doomed.add(found)
            deleted = 0
            if doomed:
                deleted = int(await client.delete(*doomed))
            await client.publish(CHANNEL, purge_message(keys, prefixes, tags))
            return deleted

    async def listen(self, on_purge: Callable[[bytes], None]) -> None:
        """Follow the purge channel until cancelled, resubscribing after a failure."""
        delay = 0.1
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                delay = 0.1
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30.0)
                    if msg is not None and msg.get("type") == "message":
                        on_purge(msg["data"])
            except (RedisError, OSError) as exc:
                log.debug("cache: purge channel lost, resubscribing: %r", exc)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._pool.aclose()
