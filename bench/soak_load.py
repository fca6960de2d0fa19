"""The mixed load of ``bench/soak.py``: paced Python clients, one asyncio task per slot.

Kinds: HTTP/1.1 keep-alive and ``Connection: close`` and HTTP/2 with prior knowledge
(httpx), WebSocket echo (websockets), gRPC bidirectional streams (grpc.aio). Each slot
sends one request (or one stream message) at a time, paced to ``rate`` per second, checks
the answer byte for byte and records either a success or a ``Failure`` carrying the
identity of the connection it used, so the soak can tell a request in flight on a killed
worker from a real failure:

- HTTP and WebSocket: the client's local port, seen by a recording httpcore network
  backend (httpx exposes no port on errors) or by the WebSocket connection itself;
- gRPC: the port the worker used towards the upstream, which the upstream returns in the
  stream's initial metadata (grpcio keeps its sockets to itself); a stream that fails
  before that answer takes the port of the previous stream on its channel, which went
  over the same connection to the same worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import httpcore
import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

from turnout.testing.soak import Failure

TIMEOUT = 10.0  # seconds any single request or message may take
GRPC_METHOD = "/soak.Echo/Bidi"
NO_PROXY = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1)]
KINDS = ("h1-keepalive", "h1-close", "h2", "websocket", "grpc-stream")


@dataclass
class Tally:
    """What the load saw; read by the soak's report at the end."""

    ok: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def fail(self, kind: str, port: int | None, error: object, upstream: bool = False) -> None:
        self.failures.append(Failure(kind, time.monotonic(), port, str(error)[:300], upstream))


class PortRecorder(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, noting the local port of the connection it last opened
    (None while a connect is under way, so a failed connect is never blamed on the
    previous connection)."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.port: int | None = None

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.port = None
        stream = await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        self.port = int(stream.get_extra_info("socket").getsockname()[1])
        return stream

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def http_client(http2: bool, keepalive: bool) -> tuple[httpx.AsyncClient, PortRecorder]:
    recorder = PortRecorder()
    transport = httpx.AsyncHTTPTransport(http1=not http2, http2=http2)
    # httpx takes no network backend; its pool is swapped for one that has ours, with
    # one connection so the recorded port is the one every request of this slot uses.
    transport._pool = httpcore.AsyncConnectionPool(
        max_connections=1,
        max_keepalive_connections=1 if keepalive else 0,
        http1=not http2,
        http2=http2,
        network_backend=recorder,
    )
    return httpx.AsyncClient(transport=transport, timeout=TIMEOUT), recorder


async def paced(tally: Tally, rate: float, step: Callable[[int], Awaitable[bool]]) -> None:
    """Call ``step(n)`` about ``rate`` times a second until stopped or ``step`` says done."""
    n = 0
    interval = 1.0 / rate
    next_at = time.monotonic()
    while not tally.stop.is_set():
        n += 1
        if not await step(n):
            return
        next_at = max(next_at + interval, time.monotonic() - interval)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, next_at - time.monotonic())):
                await tally.stop.wait()


async def http_slot(tally: Tally, kind: str, port: int, slot: int, rate: float) -> None:
    http2 = kind == "h2"
    client, recorder = http_client(http2=http2, keepalive=kind != "h1-close")
    headers = {"connection": "close"} if kind == "h1-close" else {}

    async def step(n: int) -> bool:
        path = f"/soak/{kind}/{slot}?n={n}"
        try:
            reply = await client.get(f"http://127.0.0.1:{port}{path}", headers=headers)
            body = reply.json()
            if reply.status_code != 200 or body.get("path") != path:
                tally.fail(kind, recorder.port, f"status {reply.status_code}: {reply.text[:200]}")
            elif "x-soak-tag" not in reply.headers:
                tally.fail(kind, recorder.port, "no x-soak-tag header")
            elif http2 != (reply.http_version == "HTTP/2"):
                tally.fail(kind, recorder.port, f"answered in {reply.http_version}")
            else:
                tally.ok[kind] += 1
        except (httpx.HTTPError, ValueError) as exc:
            tally.fail(kind, recorder.port, repr(exc))
        return True

    async with client:
        await paced(tally, rate, step)


async def _websocket_connection(
    tally: Tally, url: str, slot: int, rate: float, per_connection: int
) -> None:
    local: int | None = None
    try:
        async with asyncio.timeout(TIMEOUT):
            ws = await ws_connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT)
        local = int(ws.local_address[1])
    except (OSError, TimeoutError, WebSocketException) as exc:
        tally.fail("websocket", local, repr(exc))
        await asyncio.sleep(0.2)
        return
    broken = False

    async def step(n: int) -> bool:
        nonlocal broken
        message = f"{slot}:{n}:" + "w" * (n % 200)
        try:
            async with asyncio.timeout(TIMEOUT):
                await ws.send(message)
                echoed = await ws.recv()
        except (OSError, TimeoutError, WebSocketException) as exc:
            tally.fail("websocket", local, repr(exc))
            broken = True
            return False
        if echoed != message:
            tally.fail("websocket", local, f"echo mismatch: {echoed!r:.80}")
            broken = True
            return False
        tally.ok["websocket"] += 1
        return n < per_connection

    await paced(tally, rate, step)
    try:
        async with asyncio.timeout(TIMEOUT):
            await ws.close()
    except (OSError, TimeoutError, WebSocketException) as exc:
        if not broken:
            tally.fail("websocket", local, f"close: {exc!r}")


async def websocket_slot(
    tally: Tally, port: int, slot: int, rate: float, per_connection: int = 100
) -> None:
    """Long-lived WebSocket connections, each echoing ``per_connection`` messages."""
    while not tally.stop.is_set():
        await _websocket_connection(tally, f"ws://127.0.0.1:{port}/ws", slot, rate, per_connection)


async def _grpc_stream(
    tally: Tally, bidi: Any, slot: int, rate: float, per_stream: int, last: int | None
) -> int | None:
    """One stream; returns the upstream-side port it went through while the channel's
    connection is known to be the same (None once something broke)."""
    peer: int | None = None
    # wait_for_ready: a channel whose connection a kill just cut reconnects, as httpx
    # does, instead of failing new streams fast; a gateway that refuses still shows, as
    # a timeout.
    call = bidi(metadata=(("x-slot", str(slot)),), wait_for_ready=True)
    try:
        async with asyncio.timeout(TIMEOUT):
            meta = dict(await call.initial_metadata() or ())
            if "x-peer-port" not in meta:  # ended before the upstream answered
                raise ValueError(f"no upstream: {await call.code()} {await call.details()}")
        peer = int(meta["x-peer-port"])
    except (grpc.RpcError, TimeoutError, ValueError) as exc:
        # No port of its own yet: a stream in flight when its worker was killed ends
        # here too. The channel's previous stream (same connection, same worker) went
        # through ``last``; that is this one's identity.
        tally.fail("grpc-stream", last, f"before the upstream answered: {exc!r}", upstream=True)
        call.cancel()
        await asyncio.sleep(0.2)
        return None
    broken = False

    async def step(n: int) -> bool:
        nonlocal broken
        message = b"%d:%d:" % (slot, n) + b"g" * (n % 300)
        try:
            async with asyncio.timeout(TIMEOUT):
                await call.write(message)
                reply = await call.read()
        except asyncio.InvalidStateError:  # the stream ended between two messages
            ended = f"stream ended {await call.code()}: {await call.details()}"
            tally.fail("grpc-stream", peer, ended, upstream=True)
            broken = True
            return False
        except (grpc.RpcError, TimeoutError) as exc:
            tally.fail("grpc-stream", peer, repr(exc), upstream=True)
            broken = True
            return False
        if reply != message.upper():
            tally.fail("grpc-stream", peer, f"reply mismatch: {reply!r:.80}", upstream=True)
            broken = True
            return False
        tally.ok["grpc-stream"] += 1
        return n < per_stream

    await paced(tally, rate, step)
    if broken:  # counted once, where it broke
        call.cancel()
        return None
    try:
        async with asyncio.timeout(TIMEOUT):
            await call.done_writing()
            code = await call.code()
        if code != grpc.StatusCode.OK:
            tally.fail("grpc-stream", peer, f"stream ended {code}", upstream=True)
            return None
    except (grpc.RpcError, TimeoutError) as exc:
        tally.fail("grpc-stream", peer, f"end of stream: {exc!r}", upstream=True)
        return None
    return peer


async def grpc_slot(tally: Tally, port: int, slot: int, rate: float, per_stream: int = 50) -> None:
    """Bidirectional gRPC streams, each exchanging ``per_stream`` messages."""
    ident: Callable[[bytes], bytes] = lambda b: b  # noqa: E731 - raw bytes both ways
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=NO_PROXY) as channel:
        bidi = channel.stream_stream(
            GRPC_METHOD, request_serializer=ident, response_deserializer=ident
        )
        last: int | None = None
        while not tally.stop.is_set():
            last = await _grpc_stream(tally, bidi, slot, rate, per_stream, last)


async def guarded(tally: Tally, kind: str, client: Callable[[], Awaitable[None]]) -> None:
    """Run one client slot; an error nobody foresaw is a failure (not allowed: it has no
    connection identity), and the slot starts again."""
    while not tally.stop.is_set():
        try:
            await client()
            return
        except Exception as exc:
            tally.fail(kind, None, f"client error: {exc!r}")
            await asyncio.sleep(0.5)


async def run_load(tally: Tally, port: int, slots: int, rate: float) -> None:
    """Every kind × ``slots`` until ``tally.stop`` is set."""
    async with asyncio.TaskGroup() as group:
        for slot in range(slots):
            for kind in ("h1-keepalive", "h1-close", "h2"):
                client = functools.partial(http_slot, tally, kind, port, slot, rate)
                group.create_task(guarded(tally, kind, client))
            ws = functools.partial(websocket_slot, tally, port, slot, rate)
            group.create_task(guarded(tally, "websocket", ws))
            stream = functools.partial(grpc_slot, tally, port, slot, rate)
            group.create_task(guarded(tally, "grpc-stream", stream))
