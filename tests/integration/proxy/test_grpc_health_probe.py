"""Active gRPC health checks (``grpc.health.v1.Health/Check`` over h2c) against a real
grpcio server whose answer the test changes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from turnout.core.netaddr import Address
from turnout.proxy.upstream.probe import ProbeTarget, check, serving

SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"


class Health:
    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {"": SERVING, "shop.Orders": SERVING}
        self.asked: list[bytes] = []

    def check(self, request: bytes, context: Any) -> bytes:
        self.asked.append(request)
        service = request[2:].decode() if request[:1] == b"\x0a" else ""
        answer = self.answers.get(service)
        if answer is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return answer or b""


@pytest.fixture
def health_server() -> Iterator[tuple[Health, int]]:
    health = Health()
    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                health.check, request_deserializer=None, response_serializer=None
            )
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.enable_http_proxy", 0)]
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield health, port
    server.stop(0)


def _probe(port: int, service: str = "") -> str:
    target = ProbeTarget(
        key=f"127.0.0.1:{port}",
        address=Address("127.0.0.1", port),
        kind="GRPC",
        grpc_service=service,
        timeout=3.0,
    )
    return asyncio.run(check(target))


def test_grpc_health_checks(health_server: tuple[Health, int]) -> None:
    health, port = health_server
    assert _probe(port) == ""
    assert _probe(port, "shop.Orders") == ""
    assert health.asked[-1] == b"\x0a\x0bshop.Orders"  # HealthCheckRequest{service}
    health.answers["shop.Orders"] = NOT_SERVING
    assert _probe(port, "shop.Orders") == "not SERVING"
    assert _probe(port, "nope").startswith("grpc-status 5")
    assert _probe(port) == ""


def test_a_plain_http_server_fails_the_check() -> None:
    async def main() -> str:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        target = ProbeTarget(
            key=f"127.0.0.1:{port}", address=Address("127.0.0.1", port), kind="GRPC", timeout=2
        )
        try:
            return await check(target)
        finally:
            server.close()

    assert asyncio.run(main()) != ""


def test_serving_parses_the_response_message() -> None:
    assert serving(SERVING) and not serving(NOT_SERVING) and not serving(b"")
