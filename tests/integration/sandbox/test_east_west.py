"""East-west traffic: services call each other through Turnout (here as their HTTP
proxy), carrying the routing key with the propagation kit, so a sandbox override deep
in the call graph applies at every hop.

    client ─▶ Turnout ─▶ A (ASGI, httpx) ─▶ Turnout ─▶ B | B-dev (WSGI, requests) ─▶ Turnout ─▶ C

Only B is overridden: a keyed request reaches A, then B-dev, then C (baseline), and the
key arrives at C; an un-keyed request takes the baseline all the way.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

import httpx
import pytest
import requests
import uvicorn

from tests.conftest import ServeFactory
from tests.integration.sandbox.test_routing import _get
from turnout.propagation import current
from turnout.propagation.asgi import PropagationMiddleware as AsgiPropagation
from turnout.propagation.asgi import Receive, Scope, Send
from turnout.propagation.httpx import event_hooks
from turnout.propagation.requests import install
from turnout.propagation.wsgi import PropagationMiddleware as WsgiPropagation
from turnout.testing.manifests import backend, dump, gateway, route, to


class _Threaded(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _wsgi(app: Any) -> tuple[WSGIServer, int]:
    server = make_server("127.0.0.1", 0, app, server_class=_Threaded, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_port


def _json(start_response: StartResponse, doc: dict[str, Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(doc).encode()]


def service_c(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    return _json(start_response, {"name": "C", "baggage": environ.get("HTTP_BAGGAGE", "")})


def service_b(name: str, mesh: str) -> Any:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with install(requests.Session()) as session:
            session.trust_env = False
            downstream = session.get("http://c.svc/", proxies={"http": mesh}, timeout=10).json()
        return _json(start_response, {"name": name, "next": downstream})

    return WsgiPropagation(app)


def service_a(mesh: str) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        async with httpx.AsyncClient(proxy=mesh, event_hooks=event_hooks(), trust_env=False) as c:
            downstream = (await c.get("http://b.svc/")).json()
        ctx = current()
        body = json.dumps(
            {"name": "A", "key": ctx.routing_key if ctx else None, "next": downstream}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return AsgiPropagation(app)


def _asgi(app: Any) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def mesh(serve: ServeFactory, port: int) -> Iterator[int]:
    proxy = f"http://127.0.0.1:{port}"
    servers = []
    c, c_port = _wsgi(service_c)
    b, b_port = _wsgi(service_b("B", proxy))
    b_dev, b_dev_port = _wsgi(service_b("B-dev", proxy))
    servers += [c, b, b_dev]
    for a_port in _asgi(service_a(proxy)):
        sandbox = {
            "apiVersion": "turnout.dev/v1alpha1",
            "kind": "Sandbox",
            "metadata": {"name": "b-change"},
            "spec": {
                "routingKey": "bx",
                "overrides": [
                    {"backend": "b", "endpoints": [{"address": f"127.0.0.1:{b_dev_port}"}]}
                ],
            },
        }
        serve(
            dump(
                gateway(port=port),
                backend("a", a_port),
                backend("b", b_port),
                backend("c", c_port),
                route("a", [to("a")], hostnames=["a.svc"]),
                route("b", [to("b")], hostnames=["b.svc"]),
                route("c", [to("c")], hostnames=["c.svc"]),
                sandbox,
            ),
            workers=2,
        )
        yield port
    for server in servers:
        server.shutdown()
        server.server_close()


def test_override_applies_at_the_middle_hop(mesh: int) -> None:
    status, body, _ = _get(mesh, "/", {"host": "a.svc", "baggage": "turnout-routing-key=bx,u=1"})
    assert status == 200, body
    assert body["name"] == "A" and body["key"] == "bx"
    assert body["next"]["name"] == "B-dev"
    c = body["next"]["next"]
    assert c["name"] == "C"
    assert "turnout-routing-key=bx" in c["baggage"] and "u=1" in c["baggage"]


def test_without_a_key_every_hop_is_baseline(mesh: int) -> None:
    status, body, _ = _get(mesh, "/", {"host": "a.svc"})
    assert status == 200, body
    assert body["key"] is None
    assert body["next"]["name"] == "B" and body["next"]["next"]["name"] == "C"
    assert body["next"]["next"]["baggage"] == ""
