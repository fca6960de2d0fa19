"""A whole gateway whose PostgreSQL freezes under traffic (a relay that swallows every
byte, as a hung server or a black-holed network path would), then comes back.

Documented behaviour (docs/control-plane.md, "When PostgreSQL goes away"): the data plane
keeps serving the last revision (nothing on the request path touches the store); API
reads answer from memory; a write fails with ``503 StoreUnavailable`` within the store
timeout rather than hanging; once the database answers again, writes succeed and are
served. The store-level version of this test is ``test_store_outage.py``.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.engine import make_url

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.control.test_store_outage import Relay
from turnout.testing.loop import BackgroundLoop
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get


def _pod(port: int) -> str:
    reply = get(port, "/", timeout=5.0)
    return str(reply.json()["pod"]) if reply.status == 200 else str(reply.status)


def test_gateway_keeps_serving_while_postgresql_is_frozen(
    serve: ServeFactory, port: int, echo: EchoFactory, bg: BackgroundLoop, pg_url: str
) -> None:
    target = make_url(pg_url)
    relay = Relay((target.host or "127.0.0.1", target.port or 5432))
    relay_port = bg.run(relay.start())
    url = target.set(port=relay_port).render_as_string(hide_password=False)
    one, two = echo("one-0"), echo("two-0")
    proc = serve(dump(gateway(port=port)), store=url)
    objs = {"manifests": [backend("shop", one.port), route("r", [to("shop")])]}
    assert proc.api("POST", "/api/v1/apply", objs)[0] == 200
    wait_until(lambda: _pod(port) == "one-0", 10.0, "the stored route to serve")

    failures: list[str] = []
    served = [0]
    expected = {"one-0"}  # until the database is back, only the old revision may serve
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                pod = _pod(port)
            except OSError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if pod not in expected:
                failures.append(pod)
            served[0] += 1

    load = threading.Thread(target=traffic, daemon=True)
    load.start()
    try:
        relay.frozen = True
        time.sleep(0.3)
        # A write neither hangs nor half-writes: 503 within the client's 10 s bound.
        change = {"manifests": [backend("shop", two.port)]}
        started = time.monotonic()
        code, body = proc.api("POST", "/api/v1/apply", change)
        print(f"write with PostgreSQL frozen: {code} after {time.monotonic() - started:.2f} s")
        assert code == 503, body
        assert body["reason"] == "StoreUnavailable"
        # Reads answer from memory.
        code, body = proc.api("GET", "/api/v1/namespaces/default/backends/shop")
        assert code == 200, body
        expected.add("two-0")
        relay.frozen = False
        thawed = time.monotonic()
        wait_until(
            lambda: proc.api("POST", "/api/v1/apply", change)[0] == 200,
            30.0,
            "writes to succeed once PostgreSQL answers again",
        )
        took = time.monotonic() - thawed
        print(f"first successful write {took:.2f} s after the thaw; {served[0]} requests so far")
        stop.set()
        load.join(10)
        wait_until(lambda: _pod(port) == "two-0", 10.0, "the new revision to be served")
    finally:
        stop.set()
        load.join(10)
        relay.frozen = False
        bg.run(relay.close())
    assert served[0] > 20
    assert failures == [], failures[:5]
