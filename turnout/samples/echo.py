"""A small HTTP echo service: the bundled sample backend and the test/conformance upstream.

It answers every request with JSON describing what it received, following the Gateway
API conformance echo contract (``path`` with query, ``host``, ``method``, ``proto``,
``headers`` as canonical name → list of values, ``namespace``, ``pod``), and supports
the contract's knobs: ``?delay=1s``, ``X-Echo-Set-Header: Name:value,...``,
``/status/<code>``, ``/health`` and the ``/retry/...?uuid=&succeedAfter=`` counter.
Request bodies are read and counted (``body_bytes``), never buffered whole.

Run one: ``python -m turnout.samples.echo --port 9101 --name orders``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httptools

from turnout.core.tasks import spawn

_DURATION = re.compile(r"([0-9.]+)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(text: str) -> float:
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))


def canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


@dataclass
class EchoIdentity:
    namespace: str = "default"
    pod: str = "echo-0-0"
    service: str = ""


@dataclass
class EchoState:
    """Shared by every connection of one echo instance."""

    identity: EchoIdentity
    port: int = 0
    received: list[str] = field(default_factory=list)  # request-targets, for mirror checks
    attempts: dict[str, int] = field(default_factory=dict)  # retry counters per uuid
    requests: int = 0
    force_status: int = 0  # tests: answer every request (/health too) with this status
    force_delay: float = 0.0  # tests: wait this long (seconds) before every answer


class EchoProtocol(asyncio.Protocol):
    def __init__(self, state: EchoState) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body_bytes = 0
        self.queue: list[dict[str, Any]] = []
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply(400, b"upgrades are not supported here\n", [])
            self._close()
        except httptools.HttpParserError:
            self._reply(400, b"bad request\n", [])
            self._close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        request: dict[str, Any] = {
            "url": self.url.decode("latin-1"),
            "method": self.parser.get_method().decode(),
            "version": self.parser.get_http_version(),
            "headers": self.headers,
            "keep_alive": self.parser.should_keep_alive(),
            "body_bytes": self.body_bytes,
        }
        self.state.requests += 1
        self.state.received.append(request["url"])
        if self.busy:
            self.queue.append(request)
        else:
            self._start(request)

    def _start(self, request: dict[str, Any]) -> None:
        self.busy = True
        spawn(self._handle(request))

    async def _handle(self, request: dict[str, Any]) -> None:
        url: str = request["url"]
        path, _, query = url.partition("?")
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        delay = params.get("delay")
        if delay:
            await asyncio.sleep(_go_duration(delay))
        if self.state.force_delay:
            await asyncio.sleep(self.state.force_delay)
        if path.startswith("/retry/") and not await self._retry_passes(params):
            return
        status = 200
        if path.startswith("/status/") and path[8:].isdigit():
            status = int(path[8:])
        if self.state.force_status:
            status = self.state.force_status
        extra: list[tuple[str, str]] = []
        for name, value in request["headers"]:
            if name.lower() == "x-echo-set-header" and value:
                extra.extend(self._set_headers(value))
        if path == "/health":
            body = b"OK"
            extra.append(("Content-Type", "text/plain"))
        else:
            body = self._echo_body(request, path, url)
            extra.append(("Content-Type", "application/json"))
        self._reply(status, body if request["method"] != "HEAD" else b"", extra, len(body))
        if not request["keep_alive"]:
            self._close()
            return
        self.busy = False
        if self.queue:
            self._start(self.queue.pop(0))

    async def _retry_passes(self, params: dict[str, str]) -> bool:
        uuid, succeed_after = params.get("uuid"), params.get("succeedAfter")
        if not uuid or not succeed_after or not succeed_after.isdigit():
            self._reply(400, b"uuid and succeedAfter are required\n", [])
            self.busy = False
            return False
        count = self.state.attempts.get(uuid, 0)
        if count >= int(succeed_after):
            return True
        self.state.attempts[uuid] = count + 1
        delay = params.get("delayRetry")
        if delay:  # a failing attempt that is also slow (backend-timeout conformance cases)
            await asyncio.sleep(_go_duration(delay))
            if self.transport is None or self.transport.is_closing():
                return False
        code = params.get("responseCode")
        if code and code.isdigit():
            self._reply(int(code), b"failing on purpose\n", [])
            self.busy = False
        else:
            self._reset()
        return False

    def _echo_body(self, request: dict[str, Any], path: str, url: str) -> bytes:
        headers: dict[str, list[str]] = {}
        host = ""
        for name, value in request["headers"]:
            if name.lower() == "host":
                host = value
                continue
            headers.setdefault(canonical(name.lower()), []).append(value)
        ident = self.state.identity
        doc = {
            "path": url,
            "host": host,
            "method": request["method"],
            "proto": f"HTTP/{request['version']}",
            "headers": headers,
            "namespace": ident.namespace,
            "ingress": "",
            "service": ident.service,
            "pod": ident.pod,
            "httpPort": str(self.state.port),
            "body_bytes": request["body_bytes"],
        }
        return json.dumps(doc).encode() + b"\n"

    @staticmethod
    def _set_headers(value: str) -> list[tuple[str, str]]:
        merged: dict[str, str] = {}
        for pair in value.split(","):
            name, sep, val = pair.partition(":")
            if sep and name.strip():
                key = name.strip()
                merged[key] = f"{merged[key]},{val.strip()}" if key in merged else val.strip()
        return list(merged.items())

    def _reply(
        self, status: int, body: bytes, headers: list[tuple[str, str]], length: int | None = None
    ) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        lines = [f"HTTP/1.1 {status} {_reason(status)}\r\n"]
        lines += [f"{n}: {v}\r\n" for n, v in headers]
        lines.append(f"Content-Length: {len(body) if length is None else length}\r\n\r\n")
        self.transport.write("".join(lines).encode("latin-1") + body)

    def _reset(self) -> None:
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


async def start_echo(
    host: str = "127.0.0.1",
    port: int = 0,
    identity: EchoIdentity | None = None,
) -> tuple[asyncio.Server, EchoState]:
    state = EchoState(identity or EchoIdentity())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EchoProtocol(state), host, port, reuse_address=True)
    state.port = server.sockets[0].getsockname()[1]
    return server, state


def main() -> None:
    parser = argparse.ArgumentParser(description="Turnout sample echo service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--name", default="echo", help="service name reported as the pod prefix")
    parser.add_argument("--namespace", default="default")
    parser.add_argument(
        "--status",
        type=int,
        default=0,
        help="answer every request with this status (a broken version, for the release tutorial)",
    )
    args = parser.parse_args()

    async def run() -> None:
        ident = EchoIdentity(args.namespace, f"{args.name}-local-0", args.name)
        server, state = await start_echo(args.host, args.port, ident)
        state.force_status = args.status
        print(f"echo {args.name} listening on {args.host}:{state.port}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
