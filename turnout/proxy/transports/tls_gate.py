"""The first bytes of a TLS connection: refuse a TLS 1.0/1.1 ClientHello with an alert.

OpenSSL answers a ClientHello below the context's minimum version with a fatal
``protocol_version`` alert, but the event loop's TLS layer (uvloop's ``SSLProtocol``,
and asyncio's before CPython gh-98078) closes the socket after a failed handshake
without sending what OpenSSL left for the peer: such clients only saw the connection
drop. ``TlsVersionGate`` is the socket's protocol until the first 11 bytes are in (the
record header, the handshake header and the ClientHello's ``client_version``): a
ClientHello whose highest version is below TLS 1.2 gets the alert written here and the
connection closed; anything else is handed, bytes included, to the loop's own TLS
protocol, exactly as ``create_server(ssl=...)`` would have set it up. A refused
ClientHello is read to the end of its record before the alert is written and the socket
closed: closing with unread bytes would make the kernel send a reset, which can destroy
the alert before the client reads it. The gate holds one timer so a client that sends
nothing (or not its whole record) is closed after the handshake timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, Final

PROTOCOL_VERSION_ALERT: Final = b"\x00\x02\x02\x46"  # length 2, fatal (2), protocol_version (70)
_HEAD: Final = 11  # record header (5) + handshake type and length (4) + client_version (2)
_HANDSHAKE: Final = 0x16
_CLIENT_HELLO: Final = 0x01
_TLS12: Final = 0x0303


def ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The TLS protocol the loop's ``create_server(ssl=...)`` uses."""
    import uvloop  # a dependency; imported here so the module reads without it

    if isinstance(loop, uvloop.Loop):
        from uvloop.loop import SSLProtocol as UvSSLProtocol  # type: ignore[attr-defined]

        return UvSSLProtocol
    from asyncio.sslproto import SSLProtocol

    return SSLProtocol


def refused_version(head: bytes) -> bool:
    """``head`` (at least 11 bytes) starts a ClientHello whose best version is below 1.2."""
    if head[0] != _HANDSHAKE or head[5] != _CLIENT_HELLO:
        return False  # not a ClientHello (SSLv2 format, garbage): OpenSSL's business
    return (head[9] << 8 | head[10]) < _TLS12


class TlsVersionGate:
    """An asyncio protocol (duck typing) that lives until the ClientHello's version is
    known; ``make_tls`` returns the loop's TLS protocol around the application's."""

    __slots__ = ("alert", "buffered", "make_tls", "owed", "timeout", "timer", "transport")

    def __init__(self, make_tls: Callable[[], Any], timeout: float) -> None:
        self.make_tls = make_tls
        self.timeout = timeout
        self.buffered = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.alert = b""  # set once refused: written when the record has been read
        self.owed = 0  # bytes of the refused ClientHello's record still to come

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.timer = asyncio.get_running_loop().call_later(self.timeout, transport.close)

    def data_received(self, data: bytes) -> None:
        t = self.transport
        if t is None:
            return
        if self.alert:
            self._consume(t, len(data))
            return
        head = self.buffered + data if self.buffered else data
        if len(head) < _HEAD and head[0] == _HANDSHAKE:
            self.buffered = head  # a ClientHello in pieces: wait for its version
            return
        self.buffered = b""
        if len(head) >= _HEAD and refused_version(head):
            self.alert = b"\x15" + head[1:3] + PROTOCOL_VERSION_ALERT
            self.owed = 5 + (head[3] << 8 | head[4])  # the whole record, header included
            self._consume(t, len(head))
            return
        self._cancel_timer()
        self.transport = None  # decided: nothing more comes through the gate
        tls = self.make_tls()
        t.set_protocol(tls)
        tls.connection_made(t)
        view = memoryview(head)
        while view:  # the TLS protocol is a BufferedProtocol
            buf = tls.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            tls.buffer_updated(n)
            view = view[n:]

    def _consume(self, t: asyncio.Transport, n: int) -> None:
        """Count ``n`` bytes of the refused record; at its end, alert and close."""
        self.owed -= n
        if self.owed > 0:
            return
        self._cancel_timer()
        self.transport = None
        t.write(self.alert)
        t.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def gated_tls_factory(
    loop: asyncio.AbstractEventLoop,
    app_factory: Callable[[], Any],
    context: Any,
    handshake_timeout: float,
) -> Callable[[], TlsVersionGate]:
    """The protocol factory for a TLS server socket: ``create_server(factory, sock=...)``
    with it behaves as ``create_server(app_factory, ssl=context, ...)`` plus the gate."""
    tls_class = ssl_protocol_class(loop)

    def make_tls() -> Any:
        return tls_class(
            loop,
            app_factory(),
            context,
            None,
            server_side=True,
            server_hostname=None,
            ssl_handshake_timeout=handshake_timeout,
        )

    return partial(TlsVersionGate, make_tls, handshake_timeout)
