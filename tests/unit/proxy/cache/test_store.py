"""The memory tier (an LRU bounded in bytes) and the Redis wire form of entries."""

from __future__ import annotations

from turnout.proxy.cache.rfc import Freshness
from turnout.proxy.cache.shared import parse_purge, purge_message, variant_field
from turnout.proxy.cache.store import ENTRY_OVERHEAD, Entry, MemoryCache


def entry(
    key: bytes,
    body: bytes = b"x" * 100,
    tags: tuple[bytes, ...] = (),
    vary: tuple[bytes, ...] = (),
    values: tuple[bytes, ...] = (),
) -> Entry:
    return Entry(key, 200, [(b"etag", b'"1"')], body, Freshness(60, 0, 0), vary, values, tags)


def test_lru_is_bounded_in_bytes() -> None:
    size = entry(b"a").size
    assert size == 100 + len(b"etag") + len(b'"1"') + 4 + ENTRY_OVERHEAD
    cache = MemoryCache(3 * size)
    for key in (b"a", b"b", b"c"):
        cache.put(entry(key))
    assert cache.get(b"a", {}) is not None  # a is now the most recently used
    cache.put(entry(b"d"))
    assert cache.get(b"b", {}) is None and cache.evictions == 1
    assert {k for k in (b"a", b"c", b"d") if cache.get(k, {}) is not None} == {b"a", b"c", b"d"}
    assert cache.size == 3 * size
    cache.put(entry(b"huge", body=b"x" * 10 * size))  # larger than the whole cache
    assert cache.get(b"huge", {}) is None and len(cache) == 3


def test_variants_replace_their_own() -> None:
    cache = MemoryCache(1 << 20)
    en = entry(b"k", b"en", vary=(b"accept-language",), values=(b"en",))
    fr = entry(b"k", b"fr", vary=(b"accept-language",), values=(b"fr",))
    cache.put(en)
    cache.put(fr)
    got = cache.get(b"k", {b"accept-language": b"fr"})
    assert got is not None and got.body == b"fr"
    cache.put(entry(b"k", b"fr2", vary=(b"accept-language",), values=(b"fr",)))
    got = cache.get(b"k", {b"accept-language": b"fr"})
    assert got is not None and got.body == b"fr2"
    assert cache.size == en.size + fr.size + 1
    assert cache.get(b"k", {b"accept-language": b"de"}) is None


def test_purge_by_key_prefix_and_tag() -> None:
    cache = MemoryCache(1 << 20)
    cache.put(entry(b"h/a/1", tags=(b"t1",)))
    cache.put(entry(b"h/a/2"))
    cache.put(entry(b"h/b/1", tags=(b"t1", b"t2")))
    cache.put(entry(b"h/c"))
    assert cache.purge(tags=(b"t1",)) == 2
    assert cache.purge(prefixes=(b"h/a/",)) == 1
    assert cache.purge(keys=(b"h/c", b"nope")) == 1
    assert len(cache) == 0 and cache.size == 0


def test_entry_round_trips_through_its_wire_form() -> None:
    e = Entry(
        b"h/p?q=\xff",
        404,
        [(b"content-type", b"text/plain"), (b"x-bin", b"\xfe")],
        b"\x00\nbody\n",
        Freshness(60, 1.5, 1000.0, no_cache=True, must_revalidate=True, swr=5, sie=7),
        (b"accept-encoding",),
        (b"gzip",),
        (b"t",),
    )
    back = Entry.load(e.dump())
    assert (back.key, back.status, back.headers, back.body) == (e.key, e.status, e.headers, e.body)
    f = back.fresh
    assert (
        f.lifetime,
        f.initial_age,
        f.stored_at,
        f.no_cache,
        f.must_revalidate,
        f.swr,
        f.sie,
    ) == (60, 1.5, 1000.0, True, True, 5, 7)
    assert (back.vary, back.vary_values, back.tags) == (e.vary, e.vary_values, e.tags)


def test_purge_messages_and_variant_fields() -> None:
    msg = purge_message((b"k",), (b"p",), (b"t",))
    assert parse_purge(msg) == ((b"k",), (b"p",), (b"t",))
    assert variant_field(()) == b"v:"
    assert variant_field((b"a",)) != variant_field((b"b",))
