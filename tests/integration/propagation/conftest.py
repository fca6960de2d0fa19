"""Three real services on 127.0.0.1, each instrumented with the propagation kit:

- C: a WSGI app on ``wsgiref`` (threaded) with the WSGI middleware. ``/echo`` answers,
  as JSON, the propagation headers it received and the context the middleware made
  (computed inside the response generator, so after the app call has returned);
  ``/redirect`` sends a 302 to ``/echo``.
- B: a sync ``grpc.server`` with the server interceptor. Each RPC shape calls C with a
  ``requests.Session`` that has the kit installed, from the gRPC thread pool (for the
  streaming responses, lazily from inside the response generator).
- A: a raw ASGI app on uvicorn with the ASGI middleware. ``/chain?shape=...`` calls B
  over an intercepted channel from a ``ContextThreadPoolExecutor`` (via
  ``loop.run_in_executor``); ``/fanout`` calls C five times at once with an httpx
  ``AsyncClient``; ``/ws`` is a WebSocket that reports the key.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

import grpc
import httpx
import pytest
import requests
import uvicorn

from turnout.propagation import ContextThreadPoolExecutor, current
from turnout.propagation.asgi import PropagationMiddleware as AsgiPropagation
from turnout.propagation.asgi import Receive, Scope, Send
from turnout.propagation.grpc import client_interceptor, server_interceptor
from turnout.propagation.httpx import event_hooks
from turnout.propagation.requests import install
from turnout.propagation.wsgi import PropagationMiddleware as WsgiPropagation

NO_PROXY = [("grpc.enable_http_proxy", 0)]


def fetch(url: str) -> dict[str, Any]:
    """GET ``url`` with an instrumented requests session; the JSON answer."""
    with install(requests.Session()) as session:
        session.trust_env = False
        response = session.get(url, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


# -- C: WSGI echo -----------------------------------------------------------------------------


def echo_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/redirect":
        start_response("302 Found", [("Location", "/echo"), ("Content-Length", "0")])
        return [b""]

    def body() -> Iterator[bytes]:
        ctx = current()  # runs when the server iterates, after echo_app returned
        seen = {
            "baggage": environ.get("HTTP_BAGGAGE"),
            "header": environ.get("HTTP_X_TURNOUT_ROUTING_KEY"),
            "key": ctx.routing_key,
            "members": ctx.baggage,
        }
        data = json.dumps(seen).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        yield data

    return body()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def service_c() -> Iterator[str]:
    """C's base URL."""
    server = make_server(
        "127.0.0.1",
        0,
        WsgiPropagation(echo_app),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="service-c", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(10)


# -- B: gRPC ----------------------------------------------------------------------------------


def _identity(data: bytes) -> bytes:
    return data


def make_b_handlers(c_url: str) -> grpc.GenericRpcHandler:
    def ask_c() -> bytes:
        return json.dumps({"b": current().routing_key, "c": fetch(c_url + "/echo")}).encode()

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        return ask_c()

    def call_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in range(int(request)):
            yield ask_c()  # each step runs in whichever pool thread the server uses

    def collect(requests_in: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        assert sum(1 for _ in requests_in) > 0
        return ask_c()

    def call_bidi(requests_in: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in requests_in:
            yield ask_c()

    options = {"request_deserializer": _identity, "response_serializer": _identity}
    return grpc.method_handlers_generic_handler(
        "chain.B",
        {
            "Call": grpc.unary_unary_rpc_method_handler(call, **options),
            "CallStream": grpc.unary_stream_rpc_method_handler(call_stream, **options),
            "Collect": grpc.stream_unary_rpc_method_handler(collect, **options),
            "CallBidi": grpc.stream_stream_rpc_method_handler(call_bidi, **options),
        },
    )


@pytest.fixture(scope="session")
def service_b(service_c: str) -> Iterator[str]:
    """B's target (host:port)."""
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="service-b")
    server = grpc.server(pool, interceptors=[server_interceptor()], options=NO_PROXY)
    server.add_generic_rpc_handlers((make_b_handlers(service_c),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None).wait(10)
    pool.shutdown()


def call_b(channel: grpc.Channel, shape: str) -> list[Any]:
    """Call B once in ``shape``; the decoded answers."""
    if shape == "unary_unary":
        answers = [channel.unary_unary("/chain.B/Call")(b"", timeout=10)]
    elif shape == "unary_stream":
        answers = list(channel.unary_stream("/chain.B/CallStream")(b"3", timeout=10))
    elif shape == "stream_unary":
        call = channel.stream_unary("/chain.B/Collect")
        answers = [call(iter([b"a", b"b"]), timeout=10)]
    elif shape == "stream_stream":
        answers = list(channel.stream_stream("/chain.B/CallBidi")(iter([b"a", b"b"]), timeout=10))
    else:
        raise ValueError(shape)
    return [json.loads(answer) for answer in answers]


# -- A: ASGI on uvicorn -----------------------------------------------------------------------


@dataclass
class ServiceA:
    url: str
    lifespan: list[str] = field(default_factory=list)


def make_a(b_target: str, c_url: str, lifespan: list[str]) -> AsgiPropagation:
    channel = grpc.intercept_channel(
        grpc.insecure_channel(b_target, options=NO_PROXY), client_interceptor()
    )
    pool = ContextThreadPoolExecutor(max_workers=8, thread_name_prefix="service-a")

    async def respond(send: Send, payload: object) -> None:
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                lifespan.append(f"{message['type']}:{current().routing_key}")
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    channel.close()
                    pool.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": json.dumps(current().routing_key)})
            await send({"type": "websocket.close", "code": 1000})
            return
        loop = asyncio.get_running_loop()
        if scope["path"] == "/chain":
            shape = parse_qs(scope["query_string"].decode())["shape"][0]
            # Sync gRPC blocks: call it from the pool, whose submit copies our context.
            answers = await loop.run_in_executor(pool, call_b, channel, shape)
            await respond(send, {"a": current().routing_key, "answers": answers})
        elif scope["path"] == "/fanout":
            async with httpx.AsyncClient(event_hooks=event_hooks(), trust_env=False) as client:

                async def one() -> Any:
                    response = await client.get(c_url + "/echo")
                    return response.json()

                tasks = [asyncio.create_task(one()) for _ in range(2)]
                seen = await asyncio.gather(*tasks, *(one() for _ in range(3)))
            await respond(send, seen)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    return AsgiPropagation(app)


@pytest.fixture(scope="session")
def service_a(service_b: str, service_c: str) -> Iterator[ServiceA]:
    lifespan: list[str] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        make_a(service_b, service_c, lifespan), lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="service-a", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    service = ServiceA(f"http://127.0.0.1:{sock.getsockname()[1]}", lifespan)
    yield service
    server.should_exit = True
    thread.join(10)
    sock.close()
