"""The cache filter and its fill tap driven by hand, with a fake clock (no loop runs)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from turnout.proxy.cache.zone import HIT, MISS, REVALIDATED, STALE, STORED, CacheZone
from turnout.proxy.filters.base import FilterContext, FilterHost, StoredReply
from turnout.proxy.filters.cache import CacheFill, CacheFilter, CacheKeying
from turnout.proxy.protocols.heads import RequestHead, ResponseHead


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def request(path: bytes = b"/a", **fields: bytes) -> FilterContext:
    headers = [(b"host", b"shop.example")] + [
        (k.replace("_", "-").encode(), v) for k, v in fields.items()
    ]
    head = RequestHead(b"GET", path, b"", headers, authority=b"shop.example")
    return FilterContext(cast(FilterHost, None), head, cast(asyncio.AbstractEventLoop, None))


def make(clock: Clock, **kw: Any) -> CacheFilter:
    return CacheFilter(
        CacheZone("ns/p", 1 << 20),
        CacheKeying(True, True, True, (), False),
        None,
        statuses=frozenset({200}),
        clock=clock,
        **kw,
    )


def fill(
    flt: CacheFilter,
    ctx: FilterContext,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"hello",
    status: int = 200,
) -> Any:
    assert flt.on_request(ctx) is None
    tap = ctx.response_tap
    assert isinstance(tap, CacheFill)
    reply = tap.head(ResponseHead(status, headers))
    if reply is None:
        tap.body(body)
        tap.end()
    return reply


def test_miss_store_hit_age_and_expiry() -> None:
    clock = Clock()
    flt = make(clock)
    fill(flt, request(), [(b"cache-control", b"max-age=10")])
    assert flt.zone.counts[MISS] == 1 and flt.zone.counts[STORED] == 1
    clock.now += 4
    reply = flt.on_request(request())
    assert isinstance(reply, StoredReply) and reply.body == b"hello"
    assert (b"age", b"4") in reply.head.headers and (b"x-cache", b"HIT") in reply.head.headers
    assert flt.zone.counts[HIT] == 1
    clock.now += 6  # age 10: stale, and nothing to revalidate with
    ctx = request()
    assert flt.on_request(ctx) is None and isinstance(ctx.response_tap, CacheFill)


def test_revalidation_merges_the_304() -> None:
    clock = Clock()
    flt = make(clock)
    fill(flt, request(), [(b"cache-control", b"max-age=1"), (b"etag", b'"v1"')])
    clock.now += 5
    ctx = request()
    assert flt.on_request(ctx) is None
    assert (b"if-none-match", b'"v1"') in ctx.head.headers  # asks upstream with the validator
    tap = ctx.response_tap
    assert isinstance(tap, CacheFill)
    reply = tap.head(ResponseHead(304, [(b"cache-control", b"max-age=100")]))
    assert isinstance(reply, StoredReply) and reply.head.status == 200
    assert reply.body == b"hello" and (b"x-cache", b"REVALIDATED") in reply.head.headers
    assert flt.zone.counts[REVALIDATED] == 1
    clock.now += 50
    again = flt.on_request(request())
    assert isinstance(again, StoredReply) and (b"x-cache", b"HIT") in again.head.headers


def test_stale_if_error_and_while_revalidating() -> None:
    clock = Clock()
    flt = make(clock)
    cc = b"max-age=1, stale-if-error=30, stale-while-revalidate=30"
    fill(flt, request(), [(b"cache-control", cc)])
    clock.now += 5
    leader = request()
    assert flt.on_request(leader) is None  # revalidates (it holds the key's flight)
    follower = flt.on_request(request())
    assert isinstance(follower, StoredReply)
    assert (b"x-cache", b"STALE") in follower.head.headers
    tap = leader.response_tap
    assert isinstance(tap, CacheFill)
    on_error = tap.head(ResponseHead(503, []))
    assert isinstance(on_error, StoredReply) and on_error.body == b"hello"
    assert flt.zone.counts[STALE] == 2
    assert b"shop.example/a" not in flt.zone.flights  # the flight landed


def test_not_stored_and_conditional_hits() -> None:
    clock = Clock()
    flt = make(clock)
    fill(flt, request(b"/p"), [(b"cache-control", b"private, max-age=60")])
    ctx = request(b"/p")
    assert flt.on_request(ctx) is None  # still a miss
    fill(flt, request(b"/e"), [(b"cache-control", b"max-age=60"), (b"etag", b'"x"')])
    reply = flt.on_request(request(b"/e", if_none_match=b'W/"x"'))
    assert isinstance(reply, StoredReply) and reply.head.status == 304 and reply.body == b""
    bypass = request(b"/e", authorization=b"Bearer t")
    assert flt.on_request(bypass) is None and bypass.response_tap is None
    too_big = make(clock, max_object=4)
    fill(too_big, request(b"/big"), [(b"cache-control", b"max-age=60")], body=b"12345")
    assert too_big.on_request(request(b"/big")) is None
    assert too_big.zone.counts[STORED] == 0
