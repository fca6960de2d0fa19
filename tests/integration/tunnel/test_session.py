"""The tunnel end to end: real WebSockets, real TCP/unix sockets, no mocks.

Each test runs its own loop (``asyncio.run``) holding a ``websockets`` server and client
on 127.0.0.1 with a ``TunnelSession`` at each end, local listeners that ``bridge``
accepted connections, and TCP echo/sink servers that the other end ``dial``s. A test
fails if the loop's exception handler saw anything (an exception escaping a callback,
a task exception never retrieved).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from turnout.testing import free_port
from turnout.tunnel import (
    INITIAL_WINDOW,
    BridgeResult,
    Dial,
    FrameType,
    Recv,
    TunnelConnection,
    TunnelProtocolError,
    TunnelSession,
    decode_frame,
    encode_frame,
)

MiB = 1024 * 1024
SMALL_BUFFER = 32 * 1024  # kernel socket buffers in the backpressure test


def run(main: Callable[[], Coroutine[Any, Any, None]], timeout: float = 15.0) -> None:
    """Run ``main`` in a fresh loop; fail on anything the loop's exception handler saw."""
    problems: list[dict[str, Any]] = []

    async def wrapper() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: problems.append(ctx))
        async with asyncio.timeout(timeout):
            await main()

    asyncio.run(wrapper())
    assert problems == []


def receiver(ws: ClientConnection | ServerConnection) -> Recv:
    """Adapt a ``websockets`` connection to the session's ``recv``: None once closed."""

    async def recv() -> bytes | None:
        try:
            message = await ws.recv()
        except ConnectionClosed:
            return None
        assert isinstance(message, bytes)
        return message

    return recv


@dataclass
class Tunnel:
    server: TunnelSession
    client: TunnelSession
    server_ws: ServerConnection
    client_ws: ClientConnection
    server_run: asyncio.Future[None]
    client_run: asyncio.Task[None]


@asynccontextmanager
async def tunnel(
    server_dial: Dial | None = None, client_dial: Dial | None = None
) -> AsyncIterator[Tunnel]:
    """A WebSocket server and client on 127.0.0.1 with a running session at each end."""
    loop = asyncio.get_running_loop()
    server_side: asyncio.Future[tuple[TunnelSession, ServerConnection]] = loop.create_future()
    server_run: asyncio.Future[None] = loop.create_future()

    async def handler(ws: ServerConnection) -> None:
        session = TunnelSession(TunnelConnection(client=False), ws.send, receiver(ws))
        server_side.set_result((session, ws))
        try:
            await session.run(server_dial)
        finally:
            server_run.set_result(None)

    # Compression would only burn CPU on the tunnel's (often already compressed) bytes.
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            client = TunnelSession(TunnelConnection(client=True), ws.send, receiver(ws))
            client_run = asyncio.create_task(client.run(client_dial))
            session, server_ws = await server_side
            yield Tunnel(session, client, server_ws, ws, server_run, client_run)
        await client_run
        await server_run
    # Nothing left behind once the WebSocket is gone.
    assert session.closed and client.closed
    assert session.stream_ids == [] and client.stream_ids == []


class Counter:
    """A count that can be awaited."""

    def __init__(self) -> None:
        self.value = 0
        self._changed = asyncio.Event()

    def add(self) -> None:
        self.value += 1
        self._changed.set()

    async def reach(self, n: int) -> None:
        while self.value < n:
            self._changed.clear()
            await self._changed.wait()


@dataclass
class Listener:
    """A local listener that bridges each accepted connection over ``session``."""

    server: asyncio.Server
    results: list[BridgeResult] = field(default_factory=list)
    finished: Counter = field(default_factory=Counter)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


async def listen(
    session: TunnelSession, *, rcvbuf: int = 0, unix_path: str | None = None
) -> Listener:
    listener: Listener

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        meta = {"peer": f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"}
        listener.results.append(await session.bridge(reader, writer, meta))
        listener.finished.add()

    if unix_path is not None:
        server = await asyncio.start_unix_server(on_connect, unix_path)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before listen(): accepted sockets inherit it and the window scale
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        server = await asyncio.start_server(on_connect, sock=sock)
    listener = Listener(server)
    return listener


@dataclass
class Echo:
    """A TCP echo server; counts connections that ended."""

    server: asyncio.Server
    closed: Counter = field(default_factory=Counter)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


async def start_echo(*, reply_after_eof: bool = False) -> Echo:
    """Echo bytes as they come, or (``reply_after_eof``) read to EOF and then answer with
    a digest of what arrived — which only works through a real half-close."""
    echo: Echo

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if reply_after_eof:
                body = await reader.read()
                writer.write(b"%d:%s" % (len(body), hashlib.sha256(body).hexdigest().encode()))
                await writer.drain()
            else:
                while data := await reader.read(256 * 1024):
                    writer.write(data)
                    await writer.drain()
        except OSError:
            pass  # the tunnel aborted the connection
        finally:
            writer.close()
            echo.closed.add()

    echo = Echo(await asyncio.start_server(handle, "127.0.0.1", 0))
    return echo


def dial_to(port: int, seen: list[dict[str, Any]] | None = None, *, sndbuf: int = 0) -> Dial:
    async def dial(meta: dict[str, Any]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if seen is not None:
            seen.append(meta)
        if not sndbuf:
            return await asyncio.open_connection("127.0.0.1", port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return await asyncio.open_connection(sock=sock)

    return dial


async def exchange(
    connect_to: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
    payload: bytes,
) -> bytes:
    """Send ``payload``, half-close, and read everything that comes back until EOF."""
    reader, writer = await connect_to()

    async def send() -> None:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    try:
        return await reader.read()
    finally:
        await sender
        writer.close()
        await writer.wait_closed()


async def settled(value: Callable[[], int], quiet: float = 0.3) -> int:
    """Wait until ``value()`` stops changing for ``quiet`` seconds; return it."""
    last = -1
    while (now := value()) != last:
        last = now
        await asyncio.sleep(quiet)
    return last


# ----------------------------------------------------------------------------- (a)


def test_fifty_concurrent_streams_echo_one_mib_each() -> None:
    async def main() -> None:
        echo = await start_echo()
        dials: list[dict[str, Any]] = []
        async with tunnel(server_dial=dial_to(echo.port, dials)) as t:
            listener = await listen(t.client)
            payloads = [os.urandom(MiB) for _ in range(50)]
            replies = await asyncio.gather(
                *(
                    exchange(lambda: asyncio.open_connection("127.0.0.1", listener.port), p)
                    for p in payloads
                )
            )
            assert [hashlib.sha256(r).digest() for r in replies] == [
                hashlib.sha256(p).digest() for p in payloads
            ]
            await listener.finished.reach(50)
            assert {(r.reset, r.sent, r.received) for r in listener.results} == {(None, MiB, MiB)}
            assert sorted(r.stream_id for r in listener.results) == list(range(1, 100, 2))
            assert all(m["peer"].startswith("127.0.0.1:") for m in dials)
            await echo.closed.reach(50)
            listener.server.close()
        echo.server.close()

    run(main)


# ----------------------------------------------------------------------------- (b)


def test_slow_local_reader_backpressures_the_remote_sender() -> None:
    total = 16 * MiB
    data = os.urandom(total)

    async def main() -> None:
        release = asyncio.Event()
        digest = hashlib.sha256()
        received = 0
        sink_done = asyncio.Event()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            await release.wait()  # a local reader that does not read
            while chunk := await reader.read(MiB):
                digest.update(chunk)
                received += len(chunk)
            writer.close()
            sink_done.set()

        sink_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sink_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        sink_sock.bind(("127.0.0.1", 0))
        sink_sock.listen()
        sink_server = await asyncio.start_server(sink, sock=sink_sock)
        sink_port = sink_sock.getsockname()[1]

        async with tunnel(server_dial=dial_to(sink_port, sndbuf=SMALL_BUFFER)) as t:
            listener = await listen(t.client, rcvbuf=SMALL_BUFFER)
            app = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            app.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
            app.setblocking(False)
            await asyncio.get_running_loop().sock_connect(app, ("127.0.0.1", listener.port))
            reader, writer = await asyncio.open_connection(sock=app)
            written = 0

            async def produce() -> None:
                nonlocal written
                for start in range(0, total, 64 * 1024):
                    writer.write(data[start : start + 64 * 1024])
                    await writer.drain()
                    written = start + 64 * 1024
                writer.write_eof()

            producer = asyncio.create_task(produce())
            stalled_at = await settled(lambda: written)
            # The producer is stuck far short of the end: backpressure reached it.
            assert 0 < stalled_at < total // 4, stalled_at
            [client_sid] = t.client.stream_ids
            [server_sid] = t.server.stream_ids
            sender = t.client.stream_info(client_sid)
            holder = t.server.stream_info(server_sid)
            assert sender is not None and holder is not None
            # The sending side stopped reading its socket: no credit left...
            assert sender.paused and sender.send_window == 0
            assert sender.sent <= INITIAL_WINDOW + holder.received
            # ...and the receiving side holds at most one window in user space.
            assert 0 < holder.queued <= INITIAL_WINDOW
            assert holder.received < 2 * MiB  # the rest is in (small) kernel buffers
            # Reading resumes: everything arrives, intact.
            release.set()
            await producer
            await sink_done.wait()
            assert received == total
            assert digest.digest() == hashlib.sha256(data).digest()
            assert await reader.read() == b""  # the sink closed: EOF crosses back
            writer.close()
            await listener.finished.reach(1)
            assert listener.results[0].reset is None
            assert listener.results[0].sent == total
            listener.server.close()
        sink_server.close()

    run(main)


# ----------------------------------------------------------------------------- (c)


def test_half_close_still_receives_the_reply() -> None:
    async def main() -> None:
        echo = await start_echo(reply_after_eof=True)
        async with tunnel(server_dial=dial_to(echo.port)) as t:
            listener = await listen(t.client)
            body = os.urandom(300_000)
            reply = await exchange(
                lambda: asyncio.open_connection("127.0.0.1", listener.port), body
            )
            assert reply == b"%d:%s" % (len(body), hashlib.sha256(body).hexdigest().encode())
            await listener.finished.reach(1)
            [result] = listener.results
            assert (result.reset, result.sent, result.received) == (None, len(body), len(reply))
            listener.server.close()
        echo.server.close()

    run(main)


# ----------------------------------------------------------------------------- (d)


def test_dial_failure_closes_the_local_connection_with_the_reason() -> None:
    async def main() -> None:
        dead_port = free_port()  # nothing listens there
        async with tunnel(server_dial=dial_to(dead_port)) as t:
            listener = await listen(t.client)
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(b"hello?")
            try:
                assert await reader.read() == b""
            except ConnectionResetError:
                pass  # the local socket was aborted: also a close
            writer.close()
            await listener.finished.reach(1)
            [result] = listener.results
            assert result.reset is not None
            assert result.reset.startswith("reset by peer: dial failed: ConnectionRefusedError")
            assert (result.sent, result.received) == (0, 0)
            listener.server.close()

    run(main)


def test_a_side_without_dial_refuses_streams() -> None:
    async def main() -> None:
        async with tunnel() as t:
            listener = await listen(t.client)
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            try:
                await reader.read()
            except ConnectionResetError:
                pass
            writer.close()
            await listener.finished.reach(1)
            assert listener.results[0].reset == "reset by peer: this side accepts no streams"
            listener.server.close()

    run(main)


# ----------------------------------------------------------------------------- (e)


def test_websocket_drop_closes_every_local_connection_promptly() -> None:
    async def main() -> None:
        echo = await start_echo()
        async with tunnel(server_dial=dial_to(echo.port)) as t:
            listener = await listen(t.client)
            apps = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(5)]
            for reader, writer in apps:  # every stream is up and bridged
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
            assert len(t.client.stream_ids) == len(t.server.stream_ids) == 5

            t.client_ws.transport.abort()  # the WebSocket drops, without a close handshake

            async with asyncio.timeout(1.0):
                for reader, _writer in apps:
                    try:
                        assert await reader.read() == b""
                    except ConnectionResetError:
                        pass
                await echo.closed.reach(5)  # the dialed side is closed too
                await t.client_run
                await t.server_run
            for _reader, writer in apps:
                writer.close()
            await listener.finished.reach(5)
            assert {r.reset for r in listener.results} == {"websocket closed"}
            listener.server.close()
        echo.server.close()

    run(main)


def test_closing_the_session_ends_it_on_both_sides() -> None:
    async def main() -> None:
        echo = await start_echo()
        async with tunnel(server_dial=dial_to(echo.port)) as t:
            listener = await listen(t.client)
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            await t.client.close("user pressed Ctrl-C")
            await t.server_run  # the server saw GOAWAY and ended its side
            await echo.closed.reach(1)
            try:
                assert await reader.read() == b""
            except ConnectionResetError:
                pass
            writer.close()
            await listener.finished.reach(1)
            assert listener.results[0].reset == "session closed: user pressed Ctrl-C"
            listener.server.close()
            await t.client_ws.close()  # the caller closes the WebSocket; run() returns
            await t.client_run
        echo.server.close()

    run(main)


# ----------------------------------------------------------------------------- (f)


def test_streams_opened_by_the_server_are_dialed_by_the_client() -> None:
    """``turnout connect``: the gateway listens on a unix socket, the CLI dials TCP —
    while streams opened by the client run the other way over the same WebSocket."""

    async def main() -> None:
        echo = await start_echo()
        seen: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "connect.sock")
            async with tunnel(
                server_dial=dial_to(echo.port), client_dial=dial_to(echo.port, seen)
            ) as t:
                on_server = await listen(t.server, unix_path=path)
                on_client = await listen(t.client)
                payload = os.urandom(2 * MiB)
                from_server, from_client = await asyncio.gather(
                    exchange(lambda: asyncio.open_unix_connection(path), payload),
                    exchange(lambda: asyncio.open_connection("127.0.0.1", on_client.port), payload),
                )
                assert from_server == payload and from_client == payload
                await on_server.finished.reach(1)
                await on_client.finished.reach(1)
                [server_opened] = on_server.results
                [client_opened] = on_client.results
                assert server_opened.stream_id % 2 == 0 and client_opened.stream_id % 2 == 1
                assert server_opened.reset is None and client_opened.reset is None
                assert seen == [{"peer": "unix"}]
                on_server.server.close()
                on_client.server.close()
        echo.server.close()

    run(main)


# ----------------------------------------------------------------------------- errors


def test_peer_breaking_the_protocol_gets_goaway_and_streams_close() -> None:
    """A hand-driven peer sends a frame for a stream that never existed: the session
    answers GOAWAY, closes its dialed connection and ``run`` raises."""

    async def main() -> None:
        echo = await start_echo()
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def handler(ws: ServerConnection) -> None:
            session = TunnelSession(TunnelConnection(client=False), ws.send, receiver(ws))
            try:
                await session.run(dial_to(echo.port))
            except TunnelProtocolError as exc:
                outcome.set_result(exc)
            else:
                outcome.set_result(None)

        async with (
            serve(handler, "127.0.0.1", 0, compression=None) as server,
            connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/") as ws,
        ):
            recv = receiver(ws)
            await ws.send(encode_frame(FrameType.OPEN, 1, b'{"peer": "raw"}'))
            assert await recv() == encode_frame(FrameType.OPEN_OK, 1)
            await ws.send(encode_frame(FrameType.DATA, 1, b"ping"))
            assert await recv() == encode_frame(FrameType.DATA, 1, b"ping")  # echoed
            await ws.send(encode_frame(FrameType.DATA, 3, b"stream 3 was never opened"))
            message = await recv()
            assert message is not None
            goaway = decode_frame(message)
            assert goaway.type is FrameType.GOAWAY
            assert goaway.payload == b"protocol error: DATA for unknown stream 3"
            assert await recv() is None  # then the server closes the WebSocket
            error = await outcome
            assert isinstance(error, TunnelProtocolError)
            await echo.closed.reach(1)  # the dialed connection was closed
        echo.server.close()

    run(main)
