"""The propagation kit on a chain of three real services, HTTP → gRPC → HTTP, where
every hop goes through Turnout and only the middle (gRPC) service is overridden:

    client ─▶ Turnout ─▶ A (ASGI) ─grpc▶ Turnout ─▶ B | B-dev (grpcio) ─▶ Turnout ─▶ C (WSGI)

A calls B with an intercepted grpcio channel pointed at Turnout (authority ``b.svc``,
routed by a GRPCRoute to an ``appProtocol: grpc`` Backend); B calls C with a requests
session through Turnout as its HTTP proxy. A keyed request reaches B-dev and then the
baseline C, and the key arrives at C.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
import requests

from tests.conftest import ServeFactory
from tests.integration.sandbox.test_east_west import _asgi, _wsgi, service_c
from tests.integration.sandbox.test_routing import _get
from turnout.propagation.asgi import PropagationMiddleware as AsgiPropagation
from turnout.propagation.asgi import Receive, Scope, Send
from turnout.propagation.grpc import client_interceptor, server_interceptor
from turnout.propagation.requests import install
from turnout.testing.manifests import backend, dump, gateway, route, to

NO_PROXY = [("grpc.enable_http_proxy", 0)]


def _ident(b: bytes) -> bytes:
    return b


def grpc_service(name: str, mesh_port: int) -> tuple[grpc.Server, int]:
    def call(request: bytes, context: Any) -> bytes:
        with install(requests.Session()) as session:
            session.trust_env = False
            proxies = {"http": f"http://127.0.0.1:{mesh_port}"}
            downstream = session.get("http://c.svc/", proxies=proxies, timeout=10).json()
        return json.dumps({"name": name, "next": downstream}).encode()

    handler = grpc.method_handlers_generic_handler(
        "chain.B",
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                call, request_deserializer=_ident, response_serializer=_ident
            )
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[server_interceptor()],
        options=NO_PROXY,
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def service_a(mesh_port: int) -> Any:
    channel = grpc.intercept_channel(
        grpc.insecure_channel(
            f"127.0.0.1:{mesh_port}",
            options=[*NO_PROXY, ("grpc.default_authority", "b.svc")],
        ),
        client_interceptor(),
    )
    method = channel.unary_unary(
        "/chain.B/Call", request_serializer=_ident, response_deserializer=_ident
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        import asyncio

        # the sync stub runs in a thread; asyncio.to_thread copies the context
        reply = await asyncio.to_thread(method, b"", timeout=10)
        body = json.dumps({"name": "A", "next": json.loads(reply)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return AsgiPropagation(app)


def _grpc_backend(name: str, port: int) -> dict[str, Any]:
    return backend(name, port, appProtocol="grpc")


@pytest.fixture
def chain(serve: ServeFactory, port: int) -> Iterator[int]:
    c, c_port = _wsgi(service_c)
    b, b_port = grpc_service("B", port)
    b_dev, b_dev_port = grpc_service("B-dev", port)
    grpc_route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "b"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["b.svc"],
            "rules": [{"backendRefs": [{"name": "b"}]}],
        },
    }
    sandbox = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": "b-change"},
        "spec": {
            "routingKey": "bx",
            "overrides": [{"backend": "b", "endpoints": [{"address": f"127.0.0.1:{b_dev_port}"}]}],
        },
    }
    for a_port in _asgi(service_a(port)):
        serve(
            dump(
                gateway(port=port),
                backend("a", a_port),
                _grpc_backend("b", b_port),
                backend("c", c_port),
                route("a", [to("a")], hostnames=["a.svc"]),
                grpc_route,
                route("c", [to("c")], hostnames=["c.svc"]),
                sandbox,
            ),
            workers=2,
        )
        yield port
    c.shutdown()
    c.server_close()
    b.stop(0)
    b_dev.stop(0)


def test_only_the_overridden_grpc_hop_changes(chain: int) -> None:
    status, body, _ = _get(chain, "/", {"host": "a.svc", "baggage": "turnout-routing-key=bx,u=1"})
    assert status == 200, body
    assert body["next"]["name"] == "B-dev"
    c = body["next"]["next"]
    assert c["name"] == "C" and "turnout-routing-key=bx" in c["baggage"] and "u=1" in c["baggage"]
    status, body, _ = _get(chain, "/", {"host": "a.svc"})
    assert status == 200
    assert body["next"]["name"] == "B" and body["next"]["next"]["baggage"] == ""
