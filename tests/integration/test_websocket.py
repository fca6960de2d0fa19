"""WebSocket through the gateway: the tunnel opens only after the upstream's 101."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ServeFactory
from turnout.testing import BackgroundLoop, free_port
from turnout.testing.faults import start_faults
from turnout.testing.manifests import backend, dump, gateway, route, to


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@dataclass
class WsEnv:
    port: int


@pytest.fixture(scope="module")
def ws_env(bg: BackgroundLoop, serve_module: ServeFactory) -> Iterator[WsEnv]:
    async def start() -> Server:
        return await serve(_echo, "127.0.0.1", 0, max_size=32 * 1024 * 1024)

    ws_server = bg.run(start())
    ws_port = ws_server.sockets[0].getsockname()[1]
    fault_server, faults = bg.run(start_faults())
    port = free_port()
    strip = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
    }
    serve_module(
        dump(
            gateway("gw", port),
            backend("ws", ws_port),
            backend("faults", faults.port),
            route("r", [to("ws", "/ws"), to("faults", "/f", filters=[strip])]),
        )
    )
    yield WsEnv(port)
    bg.call(ws_server.close)
    bg.call(fault_server.close)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 4 * 1024 * 1024])
def test_frames_of_every_size_echo_byte_exact(ws_env: WsEnv, size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    with connect(f"ws://127.0.0.1:{ws_env.port}/ws", max_size=32 * 1024 * 1024) as ws:
        ws.send(payload)
        assert ws.recv() == payload
        ws.send("text ✓")
        assert ws.recv() == "text ✓"


def test_many_messages_and_ping_pong(ws_env: WsEnv) -> None:
    with connect(f"ws://127.0.0.1:{ws_env.port}/ws") as ws:
        for i in range(200):
            ws.send(f"m{i}")
            assert ws.recv() == f"m{i}"
        ws.ping().wait(timeout=5)


def test_close_codes_pass_through(ws_env: WsEnv) -> None:
    with connect(f"ws://127.0.0.1:{ws_env.port}/ws") as ws:
        ws.close(code=4001, reason="bye")
    assert ws.close_code == 4001  # the upstream's close frame echoes the code back
    assert ws.close_reason == "bye"


def test_refused_upgrade_is_an_ordinary_response(ws_env: WsEnv) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{ws_env.port}/f/upgrade-refused")
    assert info.value.response.status_code == 426


def test_101_without_a_valid_handshake_is_502(ws_env: WsEnv) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{ws_env.port}/f/upgrade-bogus")
    assert info.value.response.status_code == 502
