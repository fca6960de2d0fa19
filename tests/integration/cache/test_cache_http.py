"""The response cache over real sockets: RFC 9111 behaviour as a client sees it.

One gateway (one worker, memory tier) and one scripted origin serve the whole module;
each test uses its own paths. Freshness tests that need a response to go stale use
``max-age=1`` and wait just over a second (real time: the process's clock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from tests.integration.cache.conftest import Origin, Serve
from turnout.testing import free_port
from turnout.testing.manifests import backend, dump, gateway, route, to


def cache_policy(name: str = "cache", route_name: str = "r", **cache: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": name},
        "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": route_name}], "cache": cache},
    }


@pytest.fixture(scope="module")
def client(serve_module: Serve, origin_module: Origin) -> Iterator[httpx.Client]:
    port = free_port()
    serve_module(
        dump(
            gateway(port=port),
            backend("origin", origin_module.port),
            route("r", [to("origin", "/")]),
            cache_policy(key={"headers": ["x-tenant"]}),
        )
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        yield c


def twice(client: httpx.Client, path: str, **kw: Any) -> tuple[httpx.Response, httpx.Response]:
    return client.get(path, **kw), client.get(path, **kw)


def test_fresh_hit_then_head(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer("/fresh", headers={"Cache-Control": "max-age=60"}, body=b"A" * 100)
    first, second = twice(client, "/fresh")
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    assert second.status_code == 200 and second.content == b"A" * 100
    assert second.headers["x-cache"] == "HIT" and int(second.headers["age"]) >= 0
    head = client.head("/fresh")
    assert head.headers["x-cache"] == "HIT" and head.headers["content-length"] == "100"
    assert origin_module.count("/fresh") == 1


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/no-store", {"Cache-Control": "no-store, max-age=60"}),
        ("/private", {"Cache-Control": "private, max-age=60"}),
        ("/cookie", {"Cache-Control": "max-age=60", "Set-Cookie": "sid=1"}),
        ("/vary-star", {"Cache-Control": "max-age=60", "Vary": "*"}),
        ("/no-lifetime", {}),
    ],
)
def test_not_stored(
    client: httpx.Client, origin_module: Origin, path: str, headers: dict[str, str]
) -> None:
    origin_module.answer(path, headers=headers)
    first, second = twice(client, path)
    assert first.headers["x-cache"] == second.headers["x-cache"] == "MISS"
    assert origin_module.count(path) == 2


def test_authorised_requests_bypass(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer("/authz", headers={"Cache-Control": "max-age=60"}, body=b"secret")
    auth = {"Authorization": "Bearer t"}
    first, second = twice(client, "/authz", headers=auth)
    assert first.headers["x-cache"] == second.headers["x-cache"] == "BYPASS"
    # nor did the authorised answer land in the cache for anyone else
    assert client.get("/authz").headers["x-cache"] == "MISS"
    assert origin_module.count("/authz") == 3


def test_request_no_store_and_no_cache(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer("/req-cc", headers={"Cache-Control": "max-age=60", "ETag": '"v1"'})
    assert client.get("/req-cc", headers={"Cache-Control": "no-store"}).headers["x-cache"] == (
        "BYPASS"
    )
    assert client.get("/req-cc").headers["x-cache"] == "MISS"
    assert client.get("/req-cc").headers["x-cache"] == "HIT"
    # the client asks for an end-to-end revalidation: the origin confirms with a 304
    revalidated = client.get("/req-cc", headers={"Cache-Control": "no-cache"})
    assert revalidated.headers["x-cache"] == "REVALIDATED" and revalidated.content == b"hello"
    assert origin_module.seen["/req-cc"]["if-none-match"] == '"v1"'


def test_s_maxage_wins_over_max_age(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer("/smax", headers={"Cache-Control": "max-age=0, s-maxage=60"})
    assert twice(client, "/smax")[1].headers["x-cache"] == "HIT"
    assert origin_module.count("/smax") == 1


def test_expires(client: httpx.Client, origin_module: Origin) -> None:
    now = time.time()
    date = formatdate(now, usegmt=True)
    future, past = formatdate(now + 60, usegmt=True), formatdate(now - 60, usegmt=True)
    origin_module.answer("/expires-future", headers={"Date": date, "Expires": future})
    origin_module.answer("/expires-past", headers={"Date": date, "Expires": past})
    assert twice(client, "/expires-future")[1].headers["x-cache"] == "HIT"
    assert twice(client, "/expires-past")[1].headers["x-cache"] == "MISS"


def test_vary_selects_variants(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer(
        "/vary", headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"}
    )
    en = {"Accept-Language": "en"}
    fr = {"Accept-Language": "fr"}
    assert client.get("/vary", headers=en).headers["x-cache"] == "MISS"
    assert client.get("/vary", headers=fr).headers["x-cache"] == "MISS"
    assert client.get("/vary", headers=en).headers["x-cache"] == "HIT"
    assert client.get("/vary", headers=fr).headers["x-cache"] == "HIT"
    assert client.get("/vary").headers["x-cache"] == "MISS"  # absent is a value too
    assert origin_module.count("/vary") == 3


def test_key_query_and_chosen_header(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer("/keyed", headers={"Cache-Control": "max-age=60"})
    assert client.get("/keyed?page=1").headers["x-cache"] == "MISS"
    assert client.get("/keyed?page=2").headers["x-cache"] == "MISS"
    assert client.get("/keyed?page=1").headers["x-cache"] == "HIT"
    assert client.get("/keyed?page=1", headers={"x-tenant": "a"}).headers["x-cache"] == "MISS"
    assert client.get("/keyed?page=1", headers={"x-tenant": "a"}).headers["x-cache"] == "HIT"


def test_client_validators_get_304(client: httpx.Client, origin_module: Origin) -> None:
    modified = formatdate(time.time() - 3600, usegmt=True)
    origin_module.answer(
        "/validators",
        headers={"Cache-Control": "max-age=60", "ETag": 'W/"abc"', "Last-Modified": modified},
        body=b"x" * 50,
    )
    client.get("/validators")
    inm = client.get("/validators", headers={"If-None-Match": '"abc"'})
    assert inm.status_code == 304 and inm.content == b"" and inm.headers["etag"] == 'W/"abc"'
    assert inm.headers["x-cache"] == "HIT"
    other = client.get("/validators", headers={"If-None-Match": '"zzz"'})
    assert other.status_code == 200 and other.content == b"x" * 50
    ims = client.get("/validators", headers={"If-Modified-Since": formatdate(usegmt=True)})
    assert ims.status_code == 304
    older = formatdate(time.time() - 7200, usegmt=True)
    assert client.get("/validators", headers={"If-Modified-Since": older}).status_code == 200
    assert origin_module.count("/validators") == 1


def test_revalidation_upstream(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer("/reval", headers={"Cache-Control": "max-age=1", "ETag": '"r1"'})
    client.get("/reval")
    time.sleep(1.2)
    before = origin_module.not_modified
    again = client.get("/reval")
    assert again.status_code == 200 and again.content == b"hello"
    assert again.headers["x-cache"] == "REVALIDATED"
    assert origin_module.not_modified == before + 1
    assert client.get("/reval").headers["x-cache"] == "HIT"  # fresh again after the 304


def test_no_cache_response_always_revalidated(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer("/nocache", headers={"Cache-Control": "no-cache", "ETag": '"n1"'})
    client.get("/nocache")
    assert client.get("/nocache").headers["x-cache"] == "REVALIDATED"
    assert client.get("/nocache").headers["x-cache"] == "REVALIDATED"
    assert origin_module.count("/nocache") == 3


def test_stale_if_error(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer(
        "/sie", headers={"Cache-Control": "max-age=1, stale-if-error=60"}, body=b"old"
    )
    client.get("/sie")
    time.sleep(1.2)
    origin_module.answer("/sie", status=503, body=b"down")
    stale = client.get("/sie")
    assert stale.status_code == 200 and stale.content == b"old"
    assert stale.headers["x-cache"] == "STALE"


def test_must_revalidate_never_served_stale(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer(
        "/must", headers={"Cache-Control": "max-age=1, must-revalidate, stale-if-error=60"}
    )
    client.get("/must")
    time.sleep(1.2)
    origin_module.answer("/must", status=503, body=b"down")
    assert client.get("/must").status_code == 503


def test_stale_while_revalidate(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer(
        "/swr", headers={"Cache-Control": "max-age=1, stale-while-revalidate=60"}, body=b"v1"
    )
    client.get("/swr")
    time.sleep(1.2)
    origin_module.answer(
        "/swr",
        headers={"Cache-Control": "max-age=60, stale-while-revalidate=60"},
        body=b"v2",
        delay=1.0,
    )
    results: list[httpx.Response] = []
    revalidator = threading.Thread(target=lambda: results.append(client.get("/swr")))
    revalidator.start()
    time.sleep(0.3)  # the first request is now fetching v2
    with httpx.Client(base_url=str(client.base_url)) as other:
        started = time.monotonic()
        stale = other.get("/swr")
        assert time.monotonic() - started < 0.5
    assert stale.content == b"v1" and stale.headers["x-cache"] == "STALE"
    revalidator.join()
    assert results[0].content == b"v2"
    assert client.get("/swr").content == b"v2"


def test_coalescing(client: httpx.Client, origin_module: Origin) -> None:
    origin_module.answer(
        "/coalesce", headers={"Cache-Control": "max-age=60"}, body=b"c" * 1000, delay=0.5
    )
    base = str(client.base_url)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def fetch() -> None:
        with httpx.Client(base_url=base, timeout=10) as c:
            r = c.get("/coalesce")
        with lock:
            results.append(r)

    threads = [threading.Thread(target=fetch) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    assert all(r.status_code == 200 and r.content == b"c" * 1000 for r in results)
    assert origin_module.count("/coalesce") == 1
    assert sum(r.headers["x-cache"] == "MISS" for r in results) == 1
