"""gRPC through Turnout with real grpcio clients and servers: h2c from the client,
h2c to a Backend with ``appProtocol: grpc``, a GRPCRoute choosing by service and
method; all four RPC kinds, status and trailers intact, deadlines and cancellation,
and gateway errors as gRPC statuses."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from tests.conftest import ServeFactory
from turnout.testing.manifests import dump, gateway

NO_PROXY = [("grpc.enable_http_proxy", 0)]


def _ident(b: bytes) -> bytes:
    return b


class Service:
    """shop.Echo: Unary, ServerStream, ClientStream, Bidi, Slow, Fail."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cancelled = threading.Event()
        self.metadata: dict[str, str] = {}

    def unary(self, request: bytes, context: Any) -> bytes:
        self.metadata = dict(context.invocation_metadata())
        context.set_trailing_metadata((("x-served-by", self.name),))
        return self.name.encode() + b":" + request

    def server_stream(self, request: bytes, context: Any) -> Iterator[bytes]:
        n = int(request or b"3")
        for i in range(n):
            if not context.is_active():
                self.cancelled.set()
                return
            yield b"%d" % i
            if n > 1000:
                time.sleep(0.01)
        if not context.is_active():
            self.cancelled.set()

    def client_stream(self, requests: Iterator[bytes], context: Any) -> bytes:
        return b"+".join(requests)

    def bidi(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for r in requests:
            yield r.upper()

    def slow(self, request: bytes, context: Any) -> bytes:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and context.is_active():
            time.sleep(0.02)
        if not context.is_active():
            self.cancelled.set()
        return b"late"

    def fail(self, request: bytes, context: Any) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such order: " + request.decode())
        return b""

    def handler(self) -> grpc.GenericRpcHandler:
        k = dict(request_deserializer=_ident, response_serializer=_ident)
        return grpc.method_handlers_generic_handler(
            "shop.Echo",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary, **k),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, **k),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, **k),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, **k),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow, **k),
                "Fail": grpc.unary_unary_rpc_method_handler(self.fail, **k),
            },
        )


@pytest.fixture
def servers() -> Iterator[dict[str, tuple[Service, int]]]:
    out = {}
    running = []
    for name in ("v1", "v2"):
        svc = Service(name)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=NO_PROXY)
        server.add_generic_rpc_handlers((svc.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        running.append(server)
        out[name] = (svc, port)
    yield out
    for server in running:
        server.stop(0)


def _backend(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": name},
        "spec": {"endpoints": [{"address": f"127.0.0.1:{port}"}], "appProtocol": "grpc"},
    }


def _grpc_route(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "echo"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": rules},
    }


@pytest.fixture
def channel(
    serve: ServeFactory, port: int, servers: dict[str, tuple[Service, int]]
) -> Iterator[grpc.Channel]:
    rules = [
        {
            "matches": [
                {
                    "method": {"service": "shop.Echo", "method": "Unary"},
                    "headers": [{"name": "x-version", "value": "2"}],
                }
            ],
            "backendRefs": [{"name": "v2"}],
        },
        {"matches": [{"method": {"service": "shop.Echo"}}], "backendRefs": [{"name": "v1"}]},
    ]
    serve(
        dump(
            gateway(port=port),
            _backend("v1", servers["v1"][1]),
            _backend("v2", servers["v2"][1]),
            _grpc_route(rules),
        )
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=NO_PROXY) as ch:
        yield ch


def _call(ch: grpc.Channel, method: str, kind: str = "unary_unary") -> Any:
    return getattr(ch, kind)(
        f"/shop.Echo/{method}", request_serializer=_ident, response_deserializer=_ident
    )


def test_unary_with_metadata_trailers_and_routing(
    channel: grpc.Channel, servers: dict[str, tuple[Service, int]]
) -> None:
    reply, call = _call(channel, "Unary").with_call(
        b"hi", metadata=(("x-tenant", "a"),), timeout=10
    )
    assert reply == b"v1:hi"
    assert dict(call.trailing_metadata())["x-served-by"] == "v1"
    assert call.code() == grpc.StatusCode.OK
    assert servers["v1"][0].metadata["x-tenant"] == "a"
    # the GRPCRoute header match sends x-version: 2 to the other backend
    reply = _call(channel, "Unary")(b"hi", metadata=(("x-version", "2"),), timeout=10)
    assert reply == b"v2:hi"


def test_streaming_kinds(channel: grpc.Channel) -> None:
    assert list(_call(channel, "ServerStream", "unary_stream")(b"50", timeout=10)) == [
        b"%d" % i for i in range(50)
    ]
    assert (
        _call(channel, "ClientStream", "stream_unary")(iter([b"a", b"b", b"c"]), timeout=10)
        == b"a+b+c"
    )
    replies = _call(channel, "Bidi", "stream_stream")(iter([b"x", b"y"]), timeout=10)
    assert list(replies) == [b"X", b"Y"]
    big = b"z" * (3 * 1024 * 1024)
    assert _call(channel, "ClientStream", "stream_unary")(iter([big]), timeout=20) == big


def test_status_from_the_server_passes_through(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _call(channel, "Fail")(b"42", timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "no such order: 42"


def test_gateway_errors_are_grpc_statuses(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(
            "/other.Service/Get", request_serializer=_ident, response_deserializer=_ident
        )(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_deadline_and_cancellation_reach_the_server(
    channel: grpc.Channel, servers: dict[str, tuple[Service, int]]
) -> None:
    svc = servers["v1"][0]
    with pytest.raises(grpc.RpcError) as err:
        _call(channel, "Slow")(b"", timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert svc.cancelled.wait(5), "the server never saw the call end"
    svc.cancelled.clear()
    stream = _call(channel, "ServerStream", "unary_stream")(b"100000", timeout=30)
    assert next(stream) == b"0"
    stream.cancel()
    assert svc.cancelled.wait(5), "the cancellation did not reach the server"


def _raw_call(port: int, path: str, extra: list[tuple[str, str]]) -> dict[str, str]:
    """One gRPC call over a bare h2 connection, with no client-side deadline: the
    response headers and trailers, merged."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        sid = conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            (":path", path),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *extra,
        ]
        conn.send_headers(sid, headers)
        conn.send_data(sid, b"\x00\x00\x00\x00\x00", end_stream=True)
        sock.sendall(conn.data_to_send())
        seen: dict[str, str] = {}
        while True:
            data = sock.recv(65536)
            assert data, "the gateway closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    seen.update({k.decode(): v.decode() for k, v in event.headers})
                elif isinstance(event, h2.events.StreamEnded):
                    return seen
            sock.sendall(conn.data_to_send())


def test_the_gateway_enforces_grpc_timeout(
    channel: grpc.Channel, servers: dict[str, tuple[Service, int]], port: int
) -> None:
    """No client-side deadline here: only the gateway reading grpc-timeout can end the
    call (the server would answer "late" after 5 s with status OK)."""
    seen = _raw_call(port, "/shop.Echo/Slow", [("grpc-timeout", "200m")])
    assert seen[":status"] == "200"
    assert seen["grpc-status"] == "4"  # DEADLINE_EXCEEDED, from the gateway
    assert "timed out" in seen["grpc-message"]
    assert servers["v1"][0].cancelled.wait(5), "the server never saw the call end"
