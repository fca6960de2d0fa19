"""A TrafficPolicy ``cache`` as a request filter (lookup) and a response tap (fill).

``CacheFilter.on_request``: a GET/HEAD that may use the cache builds its primary key
(host, path, query, chosen fields, the Consumer — as configured) and looks in the
worker's memory, then (with ``redis: true``) suspends on one bounded Redis lookup. A
fresh stored response answers at once (``StoredReply``: 200, or 304 when the client's
``If-None-Match``/``If-Modified-Since`` matches; ``x-cache: HIT``). A stale one is served
as ``STALE`` while another request revalidates it (``stale-while-revalidate``);
otherwise this request revalidates it upstream with the stored validators. Concurrent
misses of a key wait for the first (coalescing, ``zone.py``). A miss installs a
``CacheFill`` as the request's ``response_tap``: it sees the upstream's head (a 304
refreshes the stored response; a 5xx or a failed upstream may be answered with the stale
one, ``stale-if-error``), copies the body up to ``maxObjectSize`` and stores the response
at its end, in memory and in Redis (in the background, bounded).

The RFC 9111 decisions are in ``proxy/cache/rfc.py``. A stale response is revalidated by
the request that finds it (the client waits for that one fetch, as nginx's
``proxy_cache_use_stale updating`` without ``proxy_cache_background_update``); the
requests arriving meanwhile are served stale.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, cast

from turnout.proxy.cache import rfc
from turnout.proxy.cache.shared import RedisCache
from turnout.proxy.cache.store import Entry
from turnout.proxy.cache.zone import (
    BYPASS,
    COALESCED,
    HIT,
    MISS,
    REDIS_HIT,
    REVALIDATED,
    STALE,
    STORED,
    CacheZone,
    Flight,
)
from turnout.proxy.filters.base import (
    FilterContext,
    LocalReply,
    StoredReply,
    Suspend,
    Verdict,
)
from turnout.proxy.protocols.heads import Headers, ResponseHead

_LOOKED_UP: Final = 0  # resume outcome: (kind, key, entry) from Redis
_FOLLOWED: Final = 1  # resume outcome: (kind, key, entry) from a coalesced leader
_CONDITIONALS: Final = (
    b"if-none-match",
    b"if-modified-since",
    b"if-match",
    b"if-unmodified-since",
    b"if-range",
)
_X_CACHE_MISS: Final = (b"x-cache", b"MISS")
_X_CACHE_BYPASS: Final = (b"x-cache", b"BYPASS")


class CacheKeying:
    """How a request's primary key is made (compiled from ``CacheKeySpec``)."""

    __slots__ = ("consumer", "headers", "host", "path", "plain", "query")

    def __init__(
        self, host: bool, path: bool, query: bool, headers: tuple[bytes, ...], consumer: bool
    ) -> None:
        self.host = host
        self.path = path
        self.query = query
        self.headers = headers
        self.consumer = consumer
        self.plain = host and path and query and not headers and not consumer  # the default

    def key(self, ctx: FilterContext) -> bytes:
        head = ctx.head
        if self.plain:
            if head.query:
                return head.original_authority.lower() + head.path + b"?" + head.query
            return head.original_authority.lower() + head.path
        parts: list[bytes] = [
            head.original_authority.lower() if self.host else b"",
            head.path if self.path else b"/",
        ]
        if self.query and head.query:
            parts.append(b"?" + head.query)
        for name in self.headers:
            parts.append(b"\x00" + name + b"=" + (head.received.get(name) or b""))
        if self.consumer:
            principal = ctx.principal
            consumer = principal.consumer if principal is not None else None
            parts.append(b"\x00@" + (consumer or "").encode())
        return b"".join(parts)


class CacheFilter:
    """The request hooks (wrapped by ``request_filter`` at build: this module is not
    compiled, and interpreted classes cannot derive from the compiled base classes)."""

    __slots__ = (
        "clock",
        "coalesce",
        "coalesce_timeout",
        "default_ttl",
        "keying",
        "max_object",
        "methods",
        "redis",
        "redis_timeout",
        "settings",
        "statuses",
        "tags_header",
        "zone",
    )

    def __init__(
        self,
        zone: CacheZone,
        keying: CacheKeying,
        redis: RedisCache | None,
        *,
        methods: frozenset[bytes] = frozenset({b"GET", b"HEAD"}),
        statuses: frozenset[int] = frozenset({200}),
        max_object: int = 1 << 20,
        default_ttl: float | None = None,
        cache_authorized: bool = False,
        cache_set_cookie: bool = False,
        tags_header: bytes = b"cache-tag",
        coalesce: bool = True,
        coalesce_timeout: float = 10.0,
        redis_timeout: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.zone = zone
        self.keying = keying
        self.redis = redis
        self.methods = methods
        self.statuses = statuses
        self.max_object = max_object
        self.default_ttl = default_ttl
        self.settings = (cache_authorized, cache_set_cookie)
        self.tags_header = tags_header
        self.coalesce = coalesce
        self.coalesce_timeout = coalesce_timeout
        self.redis_timeout = redis_timeout
        self.clock = clock

    def __repr__(self) -> str:
        return f"<CacheFilter {self.zone.name}>"

    # -- request phase -------------------------------------------------------------------

    def on_request(self, ctx: FilterContext) -> Verdict:
        head = ctx.head
        if head.method not in self.methods or head.has_body or head.upgrade is not None:
            return None
        received = head.received
        if (b"authorization" in received and not self.settings[0]) or (
            b"cache-control" in received
            and b"no-store" in rfc.parse_directives(received[b"cache-control"])
        ):
            self.zone.counts[BYPASS] += 1
            ctx.add_response_headers([_X_CACHE_BYPASS])
            return None
        key = self.keying.key(ctx)
        entry = self.zone.memory.get(key, received)
        if entry is None and self.redis is not None:
            return Suspend(self._lookup(key, received))
        return self._decide(ctx, key, entry, False)

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        kind, key, entry = cast(tuple[int, bytes, Entry | None], outcome)
        if kind == _LOOKED_UP:
            if entry is not None:
                self.zone.memory.put(entry)
            return self._decide(ctx, key, entry, True)
        # a coalesced follower: the leader's response, if it could be stored
        if entry is not None and entry.matches(ctx.head.received):
            fresh = entry.fresh
            if fresh.fresh(self.clock()):
                self.zone.counts[COALESCED] += 1
                return self._reply(ctx, entry, b"HIT")
        return self._fill(ctx, key, None, leader=False)

    async def _lookup(
        self, key: bytes, received: dict[bytes, bytes]
    ) -> tuple[int, bytes, Entry | None]:
        assert self.redis is not None
        entry = await self.redis.get(key, received, self.redis_timeout)
        return _LOOKED_UP, key, entry

    async def _follow(
        self, key: bytes, waiter: asyncio.Future[Entry | None]
    ) -> tuple[int, bytes, Entry | None]:
        try:
            async with asyncio.timeout(self.coalesce_timeout):
                entry = await waiter
        except TimeoutError:
            entry = None
        return _FOLLOWED, key, entry

    def _decide(
        self, ctx: FilterContext, key: bytes, entry: Entry | None, from_redis: bool
    ) -> Verdict:
        received = ctx.head.received
        zone = self.zone
        if entry is not None:
            now = self.clock()
            fresh = entry.fresh
            wants_fresh = (
                b"cache-control" in received or b"pragma" in received
            ) and rfc.request_wants_fresh(received)
            if not wants_fresh and fresh.fresh(now):
                zone.counts[HIT] += 1
                zone.counts[REDIS_HIT] += from_redis
                return self._reply(ctx, entry, b"HIT")
            if not wants_fresh and key in zone.flights and fresh.serve_while_revalidating(now):
                zone.counts[STALE] += 1
                return self._reply(ctx, entry, b"STALE")
            return self._fill(ctx, key, entry, leader=key not in zone.flights)
        if any(name in received for name in _CONDITIONALS):
            # the client holds a copy of its own: its conditional goes upstream as is and
            # the answer (often a 304) is not stored
            zone.counts[MISS] += 1
            ctx.add_response_headers([_X_CACHE_MISS])
            return None
        if self.coalesce and ctx.head.method == b"GET":
            flight = zone.flights.get(key)
            if flight is not None:
                waiter: asyncio.Future[Entry | None] = ctx.loop.create_future()
                flight.waiters.append(waiter)
                return Suspend(self._follow(key, waiter))
        return self._fill(ctx, key, None, leader=self.coalesce)

    def _fill(self, ctx: FilterContext, key: bytes, stale: Entry | None, leader: bool) -> Verdict:
        head = ctx.head
        if head.method != b"GET":
            self.zone.counts[MISS] += 1
            ctx.add_response_headers([_X_CACHE_MISS])
            return None  # a HEAD miss goes upstream and is not stored
        if leader:
            self.zone.flights[key] = Flight()
        conditional: dict[bytes, bytes] | None = None
        if stale is not None and (stale.etag is not None or stale.last_modified is not None):
            # revalidate with the stored validators; the client's own are answered here
            conditional = {n: v for n, v in head.received.items() if n in _CONDITIONALS}
            headers = [h for h in head.headers if h[0] not in _CONDITIONALS]
            if stale.etag is not None:
                headers.append((b"if-none-match", stale.etag))
            if stale.last_modified is not None:
                headers.append((b"if-modified-since", stale.last_modified))
            head.headers = headers
        ctx.response_tap = CacheFill(self, ctx, key, stale, leader, conditional)
        return None

    def _reply(
        self,
        ctx: FilterContext,
        entry: Entry,
        status: bytes,
        conditional: dict[bytes, bytes] | None = None,
    ) -> StoredReply:
        now = self.clock()
        age = (b"age", b"%d" % int(entry.fresh.age(now)))
        request = ctx.head.received if conditional is None else conditional
        if (b"if-none-match" in request or b"if-modified-since" in request) and rfc.not_modified(
            request, entry.etag, entry.last_modified
        ):
            headers = rfc.not_modified_headers(entry.headers)
            headers.append(age)
            headers.append((b"x-cache", status))
            return StoredReply(ResponseHead(304, headers), b"")
        headers = list(entry.headers)
        headers.append(age)
        headers.append((b"x-cache", status))
        return StoredReply(ResponseHead(entry.status, headers), entry.body)

    def store(self, entry: Entry, loop: asyncio.AbstractEventLoop) -> None:
        self.zone.memory.put(entry)
        self.zone.counts[STORED] += 1
        if self.redis is not None:
            self.redis.put(entry, loop, max(self.redis_timeout, 0.25))


class CacheFill:
    """One miss's or revalidation's upstream response, stored when it may be."""

    __slots__ = (
        "chunks",
        "conditional",
        "ctx",
        "done",
        "flt",
        "headers",
        "key",
        "leader",
        "received",
        "request_time",
        "size",
        "stale",
        "status",
    )

    def __init__(
        self,
        flt: CacheFilter,
        ctx: FilterContext,
        key: bytes,
        stale: Entry | None,
        leader: bool,
        conditional: dict[bytes, bytes] | None,
    ) -> None:
        self.flt = flt
        self.ctx = ctx
        self.key = key
        self.stale = stale
        self.leader = leader
        self.conditional = conditional
        self.received = ctx.head.received
        self.request_time = flt.clock()
        self.chunks: list[bytes] | None = None  # None: not storing
        self.size = 0
        self.headers: Headers = []
        self.status = 0
        self.done = False

    def _land(self, entry: Entry | None) -> None:
        self.done = True
        if self.leader:
            self.leader = False
            self.flt.zone.land(self.key, entry)

    def _stale_reply(self, now: float) -> LocalReply | None:
        stale = self.stale
        if stale is not None and stale.fresh.serve_on_error(now):
            self._land(None)
            self.flt.zone.counts[STALE] += 1
            return self.flt._reply(self.ctx, stale, b"STALE", self.conditional)
        return None

    def head(self, head: ResponseHead) -> LocalReply | None:
        flt = self.flt
        now = flt.clock()
        status = head.status
        stale = self.stale
        if status == 304 and stale is not None and self.conditional is not None:
            headers = rfc.merge_not_modified(stale.headers, head.headers)
            fresh = rfc.freshness(headers, self.request_time, now, flt.default_ttl)
            entry = Entry(
                self.key,
                stale.status,
                headers,
                stale.body,
                fresh,
                stale.vary,
                stale.vary_values,
                stale.tags,
            )
            flt.store(entry, self.ctx.loop)
            self._land(entry)
            flt.zone.counts[REVALIDATED] += 1
            return flt._reply(self.ctx, entry, b"REVALIDATED", self.conditional)
        if status >= 500:
            reply = self._stale_reply(now)
            if reply is not None:
                return reply
        flt.zone.counts[MISS] += 1
        headers = head.headers
        cl = head.content_length
        cacheable = (cl is None or cl <= flt.max_object) and rfc.storable(
            b"GET", status, flt.statuses, self.received, headers, *flt.settings, flt.default_ttl
        )
        if cacheable:
            self.status = status
            self.headers = [h for h in headers if h[0] not in rfc.UNSTORED]
            self.chunks = []
        else:
            self._land(None)
        headers.append(_X_CACHE_MISS)
        return None

    def failed(self, status: int) -> LocalReply | None:
        return self._stale_reply(self.flt.clock())

    def body(self, data: bytes) -> None:
        chunks = self.chunks
        if chunks is not None:
            self.size += len(data)
            if self.size > self.flt.max_object:
                self.chunks = None
                self._land(None)
            else:
                chunks.append(data)

    def end(self) -> None:
        chunks = self.chunks
        if chunks is None or self.done:
            self._land(None)
            return
        self.chunks = None
        flt = self.flt
        headers = self.headers
        vary = rfc.vary_names(headers) or ()
        received = self.received
        values = tuple(rfc.normalise_vary_value(received.get(n)) for n in vary)
        tags_raw = rfc.field(headers, flt.tags_header)
        tags = tuple(t for t in (tags_raw or b"").replace(b" ", b",").split(b",") if t)
        fresh = rfc.freshness(headers, self.request_time, flt.clock(), flt.default_ttl)
        entry = Entry(self.key, self.status, headers, b"".join(chunks), fresh, vary, values, tags)
        flt.store(entry, self.ctx.loop)
        self._land(entry)

    def abort(self) -> None:
        if not self.done:
            self.chunks = None
            self._land(None)
