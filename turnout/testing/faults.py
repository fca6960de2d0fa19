"""A misbehaving upstream for tests: its behaviour is chosen by the request path.

    /ok                      200, small body
    /bytes/N[?chunked=1]     200 with N bytes generated on the fly (backpressure-aware)
    /close-before-headers    read the request, close without a byte
    /reset-before-headers    read the request, RST
    /headers-then-reset      head with Content-Length 1000, 10 bytes, RST
    /truncated               head with Content-Length 1000, 10 bytes, FIN
    /chunked-unterminated    chunked head, one chunk, FIN without the last chunk
    /never-answer            read the request, never respond
    /sleep/SECONDS           answer 200 after a delay
    /head-cl                 Content-Length 5 and body "hello" (HEAD gets the head only)
    /status/CODE             answer CODE with a 5-byte body (none for 1xx/204/304)
    /interim                 103 Early Hints, then 200
    /close-delimited         200 without Content-Length or chunking, body, then FIN
    /upgrade-refused         426 to an upgrade request
    /upgrade-bogus           101 without Sec-WebSocket-Accept
    /ok-then-drop            200, and the *next* request on this connection is dropped
                             unanswered (a keep-alive race: the pool's socket is stale)

Every request's method and target are appended to ``FaultState.log``; ``connections``
counts accepted connections (to observe pooling).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass, field

_CHUNK = b"x" * 65536


@dataclass
class FaultState:
    port: int = 0
    log: list[str] = field(default_factory=list)
    connections: int = 0


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def _skip_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2) if size else None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _handle(
    state: FaultState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    state.connections += 1
    drop_next = False
    try:
        while True:
            head = await _read_head(reader)
            if head is None:
                return
            method, target, headers = head
            state.log.append(f"{method} {target}")
            if drop_next:
                writer.close()
                return
            await _skip_body(reader, headers)
            drop_next = target == "/ok-then-drop"
            keep = await _respond(method, target, headers, writer)
            if not keep:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        if not writer.transport.is_closing():
            writer.close()


async def _respond(
    method: str, target: str, headers: dict[str, str], w: asyncio.StreamWriter
) -> bool:
    path, _, query = target.partition("?")
    if path in ("/ok", "/ok-then-drop"):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    elif path.startswith("/bytes/"):
        await _send_bytes(w, int(path[7:]), "chunked=1" in query, method == "HEAD")
    elif path == "/close-before-headers":
        w.close()
        return False
    elif path == "/reset-before-headers":
        _rst(w)
        return False
    elif path == "/headers-then-reset":
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
        await w.drain()
        await asyncio.sleep(0.05)
        _rst(w)
        return False
    elif path == "/truncated":
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
        await w.drain()
        w.close()
        return False
    elif path == "/chunked-unterminated":
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n")
        await w.drain()
        w.close()
        return False
    elif path == "/never-answer":
        await asyncio.sleep(3600)
    elif path.startswith("/sleep/"):
        await asyncio.sleep(float(path[7:]))
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nslept")
    elif path == "/head-cl":
        body = b"" if method == "HEAD" else b"hello"
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n" + body)
    elif path.startswith("/status/"):
        code = int(path[8:])
        if code < 200 or code in (204, 304):
            w.write(b"HTTP/1.1 %d X\r\ncontent-length: 5\r\n\r\n" % code)
        else:
            w.write(b"HTTP/1.1 %d X\r\ncontent-length: 5\r\n\r\nbody!" % code)
    elif path == "/interim":
        w.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    elif path == "/close-delimited":
        w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-the-end")
        await w.drain()
        w.close()
        return False
    elif path == "/upgrade-refused":
        w.write(b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 4\r\n\r\nnope")
    elif path == "/upgrade-bogus":
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n")
        w.write(b"connection: upgrade\r\n\r\n")
        await w.drain()
        return False
    else:
        w.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    await w.drain()
    return True


async def _send_bytes(w: asyncio.StreamWriter, total: int, chunked: bool, head: bool) -> None:
    if chunked:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    else:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
    if head:
        await w.drain()
        return
    left = total
    while left > 0:
        piece = _CHUNK if left >= len(_CHUNK) else _CHUNK[:left]
        w.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        left -= len(piece)
        await w.drain()  # backpressure: never buffer more than the socket takes
    if chunked:
        w.write(b"0\r\n\r\n")
    await w.drain()


async def start_faults(host: str = "127.0.0.1", port: int = 0) -> tuple[asyncio.Server, FaultState]:
    state = FaultState()
    server = await asyncio.start_server(lambda r, w: _handle(state, r, w), host, port)
    state.port = server.sockets[0].getsockname()[1]
    return server, state
