"""The response cache over real sockets: RFC 9111 behaviour seen by a client."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ServeFactory
from tests.integration.cache.conftest import Origin
from turnout.testing.manifests import backend, dump, gateway, route, to


def cache_policy(**cache: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "cache"},
        "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "r"}], "cache": cache},
    }


def start(serve: ServeFactory, port: int, origin: Origin, workers: int = 1, **cache: Any) -> str:
    serve(
        dump(
            gateway(port=port),
            backend("origin", origin.port),
            route("r", [to("origin", "/")]),
            cache_policy(**cache),
        ),
        workers=workers,
    )
    return f"http://127.0.0.1:{port}"


def test_fresh_hit_and_expiry(serve: ServeFactory, port: int, origin: Origin) -> None:
    origin.answer("/a", headers={"Cache-Control": "max-age=60"}, body=b"A" * 100)
    base = start(serve, port, origin)
    with httpx.Client(base_url=base) as c:
        first = c.get("/a")
        assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
        second = c.get("/a")
        assert second.status_code == 200 and second.content == b"A" * 100
        assert second.headers["x-cache"] == "HIT"
        assert int(second.headers["age"]) >= 0
        assert c.head("/a").headers["x-cache"] == "HIT"
    assert origin.count("/a") == 1
