"""The plugin through the harness against a real lookup server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from turnout_header_enrichment import EnrichmentPlugin

from turnout.testing.plugins import PluginHarness

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def lookup_server(status: int, body: dict[str, str], delay: float = 0.0) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(delay)
            data = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_copies_fields_and_rejects_on_failure() -> None:
    async def main() -> None:
        server = await lookup_server(200, {"plan": "gold", "region": "eu"})
        port = server.sockets[0].getsockname()[1]
        config = {
            "url": f"http://127.0.0.1:{port}/users",
            "sendHeaders": ["x-user-id"],
            "copy": {"plan": "x-user-plan", "missing": "x-none"},
        }
        async with PluginHarness(EnrichmentPlugin, config) as h:
            out = await h.request(headers={"x-user-id": "42"})
            assert out.forwarded
            assert out.header("x-user-plan") == "gold"
            assert out.header("x-none") is None
        server.close()
        refusing = await lookup_server(404, {})
        port = refusing.sockets[0].getsockname()[1]
        config["url"] = f"http://127.0.0.1:{port}/users"
        async with PluginHarness(EnrichmentPlugin, config) as h:
            out = await h.request(headers={"x-user-id": "42"})
            assert out.status == 403
        refusing.close()

    asyncio.run(main())


def test_timeout_answers_failure_status() -> None:
    async def main() -> None:
        slow = await lookup_server(200, {"plan": "gold"}, delay=2.0)
        port = slow.sockets[0].getsockname()[1]
        config = {"url": f"http://127.0.0.1:{port}/", "copy": {"plan": "x-user-plan"}}
        async with PluginHarness(EnrichmentPlugin, config, timeout="100ms") as h:
            out = await h.request()
            assert out.status == 500 and out.reply is not None
            assert out.reply.code == b"plugin_timeout"
            assert h.failures == {"timeout": 1}
        slow.close()

    asyncio.run(main())
