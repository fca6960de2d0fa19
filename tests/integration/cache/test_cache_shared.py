"""The cache across workers and replicas: the Redis tier, purges, and Redis failing.

Each test starts its own ``redis-server`` (``redis_proc``) on a free port, so it may kill
and restart it; two ``turnout serve`` processes sharing it stand for two replicas.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.integration.cache.conftest import Origin, RedisProcess, Serve
from turnout.testing import free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess


def config(port: int, origin: Origin, **cache: Any) -> str:
    return dump(
        gateway(port=port),
        backend("origin", origin.port),
        route("r", [to("origin", "/")]),
        {
            "apiVersion": "turnout.dev/v1alpha1",
            "kind": "TrafficPolicy",
            "metadata": {"name": "cache"},
            "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "r"}], "cache": cache},
        },
    )


HOST = "shop.example"  # both replicas serve it: the same keys


def get(port: int, path: str) -> httpx.Response:
    # a new connection each time: the kernel spreads them over the workers
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": HOST}, timeout=10)


def test_purge_reaches_every_worker_without_redis(serve: Serve, origin: Origin) -> None:
    port = free_port()
    gw = serve(config(port, origin), workers=2)
    origin.answer("/p/a", headers={"Cache-Control": "max-age=600", "Cache-Tag": "t1"}, body=b"v1")
    for _ in range(20):  # fill both workers
        assert get(port, "/p/a").content == b"v1"
    assert origin.count("/p/a") <= 2
    origin.answer("/p/a", headers={"Cache-Control": "max-age=600"}, body=b"v2")
    code, body = gw.api("POST", "/api/v1/cache/purge", {"tags": ["t1"]})
    assert code == 200 and body["workers"] == 2 and body["redis"] is None, body
    time.sleep(0.2)
    assert all(get(port, "/p/a").content == b"v2" for _ in range(20))
    code, body = gw.api("POST", "/api/v1/cache/purge", {})
    assert code == 400 and "purge" in body["message"]


def test_two_replicas_share_redis_and_purge(
    serve: Serve, origin: Origin, redis_proc: RedisProcess
) -> None:
    port_a, port_b = free_port(), free_port()
    args = ["--redis", redis_proc.url]
    cache = {"redis": True}
    a = serve(config(port_a, origin, **cache), workers=2, args=args)
    serve(config(port_b, origin, **cache), workers=2, args=args)
    origin.answer("/s/x", headers={"Cache-Control": "max-age=600"}, body=b"v1")
    assert get(port_a, "/s/x").headers["x-cache"] == "MISS"
    time.sleep(0.2)  # the store to Redis is in the background
    from_b = get(port_b, "/s/x")
    assert from_b.headers["x-cache"] == "HIT" and from_b.content == b"v1"
    for port in (port_a, port_b):
        for _ in range(10):
            assert get(port, "/s/x").content == b"v1"
    assert origin.count("/s/x") == 1
    origin.answer("/s/x", headers={"Cache-Control": "max-age=600"}, body=b"v2")
    code, body = a.api("POST", "/api/v1/cache/purge", {"prefixes": [f"{HOST}/s/"]})
    assert code == 200 and body["redis"]["deleted"] == 1, body
    time.sleep(0.3)  # the purge channel reaches the other replica's workers
    for port in (port_a, port_b):
        for _ in range(10):
            assert get(port, "/s/x").content == b"v2"


def test_redis_killed_and_restarted_under_load(
    serve: Serve, origin: Origin, redis_proc: RedisProcess
) -> None:
    port_a, port_b = free_port(), free_port()
    args = ["--redis", redis_proc.url]
    a: TurnoutProcess = serve(config(port_a, origin, redis=True), workers=2, args=args)
    serve(config(port_b, origin, redis=True), workers=1, args=args)
    origin.answer("/k/hot", headers={"Cache-Control": "max-age=600"}, body=b"hot")
    origin.answer("/k/cold", headers={"Cache-Control": "no-store"}, body=b"cold")
    failures: list[str] = []
    slowest = [0.0]
    stop = threading.Event()

    def load() -> None:
        url = f"http://127.0.0.1:{port_a}"
        with httpx.Client(base_url=url, headers={"Host": HOST}, timeout=10) as c:
            n = 0
            while not stop.is_set():
                n += 1
                path = "/k/hot" if n % 2 else f"/k/cold?n={n}"
                started = time.monotonic()
                try:
                    r = c.get(path)
                    if r.status_code != 200:
                        failures.append(f"{path}: {r.status_code}")
                except httpx.HTTPError as exc:
                    failures.append(f"{path}: {exc!r}")
                slowest[0] = max(slowest[0], time.monotonic() - started)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    redis_proc.kill()
    time.sleep(2.0)  # requests go on without Redis
    redis_proc.start()  # empty: the shared tier starts over
    time.sleep(2.5)  # the breakers let a probe through after 1 s
    stop.set()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert slowest[0] < 1.0, slowest[0]
    # the shared tier works again: a response stored through A is a hit on B
    origin.answer("/k/after", headers={"Cache-Control": "max-age=600"}, body=b"after")
    assert get(port_a, "/k/after").headers["x-cache"] == "MISS"
    deadline = time.monotonic() + 5
    while True:
        r = get(port_b, "/k/after")
        if r.headers["x-cache"] == "HIT" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.headers["x-cache"] == "HIT" and r.content == b"after"
    assert a.metric("turnout_cache_total", policy="default/cache", outcome="hit") > 0
