"""Raw-socket HTTP/1.1 helpers: send exact bytes, read and parse what comes back.

Tests of hostile input need to control every byte and to see whether the server closed
the connection, which ``http.client`` hides.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import httptools


@dataclass
class RawResponse:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class _Collector:
    def __init__(self) -> None:
        self.responses: list[RawResponse] = []
        self.current = RawResponse()
        self.parser: httptools.HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        self.current = RawResponse()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.current.complete = True
        self.responses.append(self.current)


def parse_responses(data: bytes, head_requests: int = 0) -> list[RawResponse]:
    """Parse back-to-back responses; an incomplete last one is included (complete=False)."""
    collector = _Collector()
    parser = httptools.HttpResponseParser(collector)
    collector.parser = parser
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError:
        pass
    out = list(collector.responses)
    if collector.current.status and not collector.current.complete:
        out.append(collector.current)
    return out


def exchange(
    port: int,
    data: bytes,
    host: str = "127.0.0.1",
    timeout: float = 5.0,
    read_until_close: bool = True,
    expect: int = 1,
) -> tuple[bytes, bool]:
    """Send ``data``; read until the server closes (or ``expect`` responses when not
    ``read_until_close``). Returns ``(bytes, closed_by_server)``."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        closed = False
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
            if not read_until_close:
                got = parse_responses(b"".join(chunks))
                if len([r for r in got if r.complete]) >= expect:
                    break
        return b"".join(chunks), closed
