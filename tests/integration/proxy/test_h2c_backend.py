"""Backends with ``appProtocol: h2c`` / ``grpc``: the gateway speaks HTTP/2 with prior
knowledge to them (here: a small h2 server written with the ``h2`` library, real
sockets), translating requests from any client protocol and passing trailers back."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from tests.conftest import ServeFactory
from turnout.testing.loop import BackgroundLoop
from turnout.testing.manifests import dump, gateway, route, to
from turnout.testing.requests import request


class H2EchoProtocol(asyncio.Protocol):
    """Answers every stream with JSON describing the request; ``/trailers`` adds
    response trailers, ``/reset`` resets the stream."""

    connections = 0

    def __init__(self) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.streams: dict[int, dict[str, Any]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        H2EchoProtocol.connections += 1
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = {
                    "headers": [(k.decode(), v.decode()) for k, v in event.headers],
                    "body": b"",
                }
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id]["body"] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._answer(event.stream_id)
        assert self.transport is not None
        self.transport.write(self.conn.data_to_send())

    def _answer(self, sid: int) -> None:
        req = self.streams.pop(sid)
        pseudo = {k: v for k, v in req["headers"] if k.startswith(":")}
        if pseudo[":path"] == "/reset":
            self.conn.reset_stream(sid)
            return
        body = json.dumps(
            {
                "pseudo": pseudo,
                "headers": [(k, v) for k, v in req["headers"] if not k.startswith(":")],
                "body": req["body"].decode("latin-1"),
                "protocol": "h2",
            }
        ).encode()
        trailers = pseudo[":path"] == "/trailers"
        self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
        size = self.conn.max_outbound_frame_size
        for i in range(0, len(body), size):  # the gateway's window (4 MiB) holds it all
            last = i + size >= len(body)
            self.conn.send_data(sid, body[i : i + size], end_stream=last and not trailers)
        if trailers:
            self.conn.send_headers(sid, [("grpc-status", "0"), ("x-done", "yes")], end_stream=True)


@pytest.fixture
def h2_upstream(bg: BackgroundLoop) -> Iterator[int]:
    async def start() -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(H2EchoProtocol, "127.0.0.1", 0)

    server = bg.run(start())
    yield server.sockets[0].getsockname()[1]
    bg.call(server.close)


def _request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, Any, http.client.HTTPResponse]:
    reply = request(port, path, method=method, body=body, headers={"x-client": "h1"})
    return reply.status, reply.json() if reply.body else None, reply.response


def test_http1_clients_reach_an_h2c_backend(
    serve: ServeFactory, port: int, h2_upstream: int
) -> None:
    backend = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": "h2svc"},
        "spec": {"endpoints": [{"address": f"127.0.0.1:{h2_upstream}"}], "appProtocol": "h2c"},
    }
    serve(dump(gateway(port=port), backend, route("r", [to("h2svc")])))
    before = H2EchoProtocol.connections
    status, body, _ = _request(port, "GET", "/hello?x=1")
    assert status == 200 and body["protocol"] == "h2"
    assert body["pseudo"][":method"] == "GET" and body["pseudo"][":path"] == "/hello?x=1"
    assert body["pseudo"][":authority"] == f"127.0.0.1:{port}"
    names = [k for k, _ in body["headers"]]
    assert "x-client" in names and "x-forwarded-for" in names
    # connection-specific headers never reach an HTTP/2 upstream
    assert not {"connection", "host", "transfer-encoding", "keep-alive"} & set(names)
    # a body, with a length and streamed (chunked from the client)
    status, body, _ = _request(port, "POST", "/up", b"x" * 100_000)
    assert status == 200 and len(body["body"]) == 100_000
    # trailers from the upstream end the response (HTTP/1.1 clients get a chunked body)
    status, body, _ = _request(port, "GET", "/trailers")
    assert status == 200 and body["pseudo"][":path"] == "/trailers"
    # a reset stream is an upstream failure for that request only
    assert _request(port, "GET", "/reset")[0] == 502
    assert _request(port, "GET", "/again")[0] == 200
    # connections are pooled and reused across requests
    assert H2EchoProtocol.connections - before <= 2
