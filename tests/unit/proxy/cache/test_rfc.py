"""RFC 9111 decisions (proxy/cache/rfc.py) with plain numbers for times."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from turnout.proxy.cache import rfc

STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})


def store_ok(
    headers: list[tuple[bytes, bytes]],
    request: dict[bytes, bytes] | None = None,
    status: int = 200,
    method: bytes = b"GET",
    authorized: bool = False,
    cookies: bool = False,
    ttl: float | None = None,
) -> bool:
    return rfc.storable(method, status, STATUSES, request or {}, headers, authorized, cookies, ttl)


def test_parse_directives() -> None:
    cc = rfc.parse_directives(b'Max-Age=60, no-cache="set-cookie", , PUBLIC')
    assert cc == {b"max-age": b"60", b"no-cache": b"set-cookie", b"public": b""}
    assert rfc.parse_directives(None) == {}
    assert rfc.seconds(b"12") == 12 and rfc.seconds(b"-1") is None and rfc.seconds(b"x") is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"cache-control", b"max-age=60")], True),
        ([(b"cache-control", b"no-store, max-age=60")], False),
        ([(b"cache-control", b"private, max-age=60")], False),
        ([(b"cache-control", b"max-age=60"), (b"vary", b"*")], False),
        ([(b"cache-control", b"max-age=60"), (b"set-cookie", b"a=1")], False),
        ([(b"etag", b'"x"')], True),  # validators alone: stored to revalidate
        ([], False),  # nothing to go by
        ([(b"expires", b"Thu, 01 Jan 2099 00:00:00 GMT")], True),
    ],
)
def test_storable_by_response(headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert store_ok(headers) is expected


def test_storable_by_request_method_status_and_policy() -> None:
    ok = [(b"cache-control", b"max-age=60")]
    assert not store_ok(ok, {b"cache-control": b"no-store"})
    assert not store_ok(ok, method=b"POST")
    assert not store_ok(ok, status=500)
    assert store_ok(ok, status=404)
    auth = {b"authorization": b"Bearer x"}
    assert not store_ok(ok, auth)
    assert store_ok([(b"cache-control", b"public, max-age=60")], auth)  # §3.5
    assert store_ok([(b"cache-control", b"s-maxage=60")], auth)
    assert store_ok(ok, auth, authorized=True)
    assert store_ok([*ok, (b"set-cookie", b"a=1")], cookies=True)
    assert store_ok([], ttl=30.0)  # the policy's default TTL


def test_freshness_lifetime_precedence() -> None:
    f = rfc.freshness([(b"cache-control", b"max-age=10, s-maxage=100")], 0.0, 0.0, None)
    assert f.lifetime == 100 and f.must_revalidate  # s-maxage implies proxy-revalidate
    f = rfc.freshness([(b"cache-control", b"max-age=10")], 0.0, 0.0, 5.0)
    assert f.lifetime == 10
    date = formatdate(1_000_000, usegmt=True).encode()
    expires = formatdate(1_000_030, usegmt=True).encode()
    f = rfc.freshness([(b"date", date), (b"expires", expires)], 1_000_000, 1_000_000, None)
    assert f.lifetime == 30
    f = rfc.freshness([(b"expires", b"garbage")], 0.0, 0.0, 99.0)
    assert f.lifetime == 0  # an invalid Expires means already expired
    assert rfc.freshness([], 0.0, 0.0, 7.0).lifetime == 7.0


def test_age_and_staleness_with_a_fake_clock() -> None:
    headers = [
        (b"cache-control", b"max-age=10, stale-while-revalidate=5, stale-if-error=20"),
        (b"age", b"3"),
    ]
    f = rfc.freshness(headers, 100.0, 101.0, None)
    assert f.initial_age == 4.0  # Age + response delay (§4.2.3)
    assert f.fresh(106.9) and not f.fresh(107.0)
    assert f.serve_while_revalidating(112.0) and not f.serve_while_revalidating(112.5)
    assert f.serve_on_error(127.0) and not f.serve_on_error(127.5)
    must = rfc.freshness(
        [(b"cache-control", b"max-age=1, must-revalidate, stale-if-error=9")], 0.0, 0.0, None
    )
    assert not must.serve_on_error(2.0)
    no_cache = rfc.freshness([(b"cache-control", b"no-cache, max-age=60")], 0.0, 0.0, None)
    assert not no_cache.fresh(0.0)


def test_request_wants_fresh() -> None:
    assert rfc.request_wants_fresh({b"cache-control": b"no-cache"})
    assert rfc.request_wants_fresh({b"cache-control": b"max-age=0"})
    assert rfc.request_wants_fresh({b"pragma": b"no-cache"})
    assert not rfc.request_wants_fresh({b"pragma": b"no-cache", b"cache-control": b"max-age=5"})
    assert not rfc.request_wants_fresh({})


def test_conditionals() -> None:
    lm = formatdate(1000, usegmt=True).encode()
    assert rfc.not_modified({b"if-none-match": b'"a", W/"b"'}, b'"b"', None)
    assert rfc.not_modified({b"if-none-match": b"*"}, b'"z"', None)
    assert not rfc.not_modified({b"if-none-match": b'"a"'}, None, lm)
    later = formatdate(2000, usegmt=True).encode()
    earlier = formatdate(500, usegmt=True).encode()
    assert rfc.not_modified({b"if-modified-since": later}, None, lm)
    assert not rfc.not_modified({b"if-modified-since": earlier}, None, lm)
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3)
    assert not rfc.not_modified({b"if-none-match": b'"x"', b"if-modified-since": later}, b'"y"', lm)


def test_vary_and_304_merge() -> None:
    assert rfc.vary_names([(b"vary", b"Accept-Encoding, accept-language")]) == (
        b"accept-encoding",
        b"accept-language",
    )
    assert rfc.vary_names([(b"vary", b"*")]) is None
    assert rfc.normalise_vary_value(b"gzip , br") == b"gzip,br"
    assert rfc.normalise_vary_value(None) != rfc.normalise_vary_value(b"")
    stored = [(b"content-type", b"text/plain"), (b"etag", b'"1"'), (b"cache-control", b"max-age=1")]
    fresh = [(b"cache-control", b"max-age=60"), (b"content-length", b"0")]
    merged = rfc.merge_not_modified(stored, fresh)
    assert (b"cache-control", b"max-age=60") in merged and (
        b"content-type",
        b"text/plain",
    ) in merged
    assert (b"content-length", b"0") not in merged
    assert rfc.not_modified_headers(stored) == [(b"etag", b'"1"'), (b"cache-control", b"max-age=1")]
