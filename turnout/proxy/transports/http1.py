"""Client-facing HTTP/1.1 transport: asyncio glue for ``Http1ServerConnection``.

It owns the socket, implements the ``Downstream`` interface for one ``Exchange`` at a
time, decides response framing for this client (Content-Length as given, chunked for
HTTP/1.1 when the length is unknown, close-delimited for HTTP/1.0), and coalesces writes:
everything produced while handling one socket event goes out in a single ``writelines``.

Reading is paused for independent reasons kept in a bitmask (upstream full, body buffer
full, pipelined requests queued), so one cause resuming never overrides another.

HTTP/2 hand-over: a TLS connection whose ALPN chose ``h2``, and a plaintext connection
whose first bytes are the HTTP/2 preface (h2c with prior knowledge), are handed to an
``Http2Transport`` (``transport.set_protocol``) before any byte reaches the HTTP/1.1
codec; the connection is counted once. ``Upgrade: h2c`` from HTTP/1.1 is never honoured
(the codec strips it: h2c smuggling, reliability.md b3).
"""

from __future__ import annotations

import asyncio
import json
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Final

from turnout.proxy.exchange_core import ExchangeCore
from turnout.proxy.protocols.heads import NO_BODY_STATUSES, Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.http1 import Http1ServerConnection
from turnout.proxy.protocols.http1_wire import (
    CONTINUE_100,
    STATUS_LINES,
    chunk,
    last_chunk,
    response_head,
)
from turnout.proxy.runtime import Runtime
from turnout.proxy.streams import Exchange
from turnout.proxy.transports.accept import admit
from turnout.proxy.transports.http2 import PREFACE, Http2Transport, negotiated_h2

if TYPE_CHECKING:
    from turnout.proxy.routing.table import PortTable
    from turnout.proxy.snapshot.tables import RouteAction, Snapshot

log = logging.getLogger("turnout.proxy")

PAUSE_PIPELINE: Final = 4
_CLOSE: Final = b"connection: close\r\n"
_KEEP_ALIVE: Final = b"connection: keep-alive\r\n"
_CHUNKED: Final = b"transfer-encoding: chunked\r\n"
_PREFACE_LEN: Final = len(PREFACE)


class Http1Transport:
    """An asyncio protocol by duck typing (asyncio and uvloop need only the methods):
    not deriving from ``asyncio.Protocol`` lets mypyc compile it as a native class."""

    __slots__ = (
        "_snapshot",
        "_table",
        "body_allowed",
        "chunked_out",
        "client_cert",
        "client_eof",
        "client_ip",
        "client_json",
        "close_after",
        "closed",
        "codec",
        "deadline",
        "exchange",
        "header_started",
        "key",
        "out",
        "paused",
        "rt",
        "scheme",
        "sniff",
        "tls_listener",
        "transport",
        "tunnel",
        "write_paused",
    )

    def __init__(self, rt: Runtime, key: str, scheme: bytes = b"http") -> None:
        self.rt = rt
        self.key = key
        self.scheme = scheme
        self.codec = Http1ServerConnection(self, rt.settings.limits, scheme)
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.out: list[bytes] = []
        self.paused = 0
        self.write_paused = False
        self.chunked_out = False
        self.body_allowed = True
        self.close_after = False
        self.client_eof = False
        self.closed = False
        self.tunnel = False
        self.client_ip = b"-"
        self.client_json = b'"-"'
        # TLS: the listener the client's SNI selected (a request for another is misdirected)
        self.tls_listener: tuple[str, str] | None = None
        self.client_cert: bytes | None = None  # x-forwarded-client-cert (mutual TLS)
        self.deadline = 0.0
        self.header_started: float | None = None
        # The first bytes while they might still be the HTTP/2 preface (None: decided).
        self.sniff: bytes | None = b""
        self._snapshot: Snapshot | None = None
        self._table: PortTable[RouteAction] | None = None

    # -- the asyncio protocol interface ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if negotiated_h2(transport):
            # TLS chose HTTP/2: this protocol never sees the connection.
            self.closed = True
            h2 = Http2Transport(self.rt, self.key, self.scheme)
            transport.set_protocol(h2)  # type: ignore[arg-type]
            h2.connection_made(transport)
            return
        self.transport = transport  # type: ignore[assignment]
        rt = self.rt
        admitted = admit(rt, self, self.key, self.scheme, transport)
        if admitted is None:
            return
        self.client_ip, self.client_json, self.tls_listener, self.client_cert = admitted
        self.deadline = perf_counter() + rt.settings.header_timeout
        if rt.draining:
            transport.close()

    def data_received(self, data: bytes) -> None:
        sniff = self.sniff
        if sniff is not None:
            if sniff:
                data = sniff + data
            if len(data) < _PREFACE_LEN and PREFACE.startswith(data):
                self.sniff = data  # a partial preface: wait for the rest
                return
            self.sniff = None
            if data.startswith(PREFACE):
                self._hand_over(data)
                return
        try:
            self.codec.feed(data)
        except Exception:
            self.internal_error()
            return
        if self.codec.backlogged and not self.paused & PAUSE_PIPELINE:
            self.set_reading(PAUSE_PIPELINE, False)
        if self.out:
            self.flush()

    def _hand_over(self, data: bytes) -> None:
        """h2c with prior knowledge: the connection continues as HTTP/2."""
        rt = self.rt
        t = self.transport
        if t is None:
            return
        # Counted when it was made; the HTTP/2 protocol counts it again in connection_made.
        rt.connections.discard(self)
        rt.stats.active_connections -= 1
        rt.stats.connections_total -= 1
        self.closed = True
        h2 = Http2Transport(rt, self.key, self.scheme)
        t.set_protocol(h2)  # type: ignore[arg-type]
        h2.connection_made(t)
        h2.data_received(data)

    def internal_error(self) -> None:
        """A bug surfaced while handling this connection: answer 500 if we still can, log
        it, and close; never leave the client hanging."""
        log.exception("internal error on a client connection")
        self.rt.stats.internal_errors += 1
        ex, self.exchange = self.exchange, None
        if ex is not None:
            started = ex.response_started
            try:
                ex.abandon(500)
            except Exception:
                log.exception("while abandoning the exchange")
            if started:
                self.abort()
                return
        body = b'{"error":"internal_error","message":"internal gateway error"}\n'
        tail = b"content-type: application/json\r\ncontent-length: %d\r\n%s" % (len(body), _CLOSE)
        self.out = [response_head(500, [], tail), body]
        self._close()

    def eof_received(self) -> bool:
        self.client_eof = True
        ex = self.exchange
        if ex is not None and not ex.request_done and not self.tunnel:
            # The request body can never complete: abort instead of holding the upstream.
            self.protocol_error(400, "the client closed the connection mid-request")
            return False
        if ex is not None and self.scheme == b"https" and not self.tunnel:
            # TLS close_notify: asyncio's and uvloop's SSL transports close the connection
            # right after this call (TLS 1.2's rule), dropping every later write; the
            # response can never arrive, so stop the upstream request now (499).
            self.exchange = None
            ex.downstream_lost()
            return False
        # Nothing in flight: close now. Otherwise half-close: finish the response first.
        return ex is not None and not self.tunnel

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        rt = self.rt
        rt.stats.active_connections -= 1
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.downstream_lost()
        rt.connection_closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchange is not None:
            self.exchange.downstream_writable(False)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None:
            self.exchange.downstream_writable(True)

    # -- codec events ---------------------------------------------------------------------

    def request_received(self, head: RequestHead) -> None:
        rt = self.rt
        snap = rt.snapshot
        if snap is not self._snapshot:
            self._snapshot = snap
            self._table = snap.sockets.get(self.key)
        self.header_started = None
        self.chunked_out = False
        self.body_allowed = True
        ex = self.exchange = Exchange(rt, self, head, perf_counter())
        ex.start(self._table)

    def request_body(self, data: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex.request_body(data)

    def request_complete(self, trailers: Headers | None) -> None:
        ex = self.exchange
        if ex is not None:
            ex.request_complete(trailers)

    def tunnel_data(self, data: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex.client_tunnel_data(data)

    def protocol_error(self, status: int, message: str) -> None:
        self.rt.stats.protocol_errors += 1
        ex = self.exchange
        if ex is not None:
            # The body of the request being answered is malformed or too large.
            self.exchange = None
            started = ex.response_started
            ex.abandon(status)
            if started:
                self.abort()
                return
        else:
            self.rt.refused(status, self.client_json)
        body = b'{"error":"bad_request","message":%s}\n' % json.dumps(message).encode()
        tail = b"content-type: application/json\r\ncontent-length: %d\r\n%s" % (len(body), _CLOSE)
        self.out.append(response_head(status, [], tail))
        self.out.append(body)
        self.close_after = True
        self._close()

    # -- Downstream interface (used by Exchange) -----------------------------------------

    def send_response(self, head: ResponseHead, request: RequestHead) -> None:
        headers = head.headers
        status = head.status
        if status < 200 and status != 101:
            if request.version == b"1.1":
                self.out.append(response_head(status, headers, b""))
            return
        if status == 101:
            self.out.append(response_head(status, headers, b""))
            return
        if request.method == b"HEAD" or status in NO_BODY_STATUSES:
            self.body_allowed = False
        if head.content_length is not None:
            tail = b"content-length: %d\r\n" % head.content_length
        elif not self.body_allowed:
            tail = b""
        elif request.version == b"1.1":
            tail = _CHUNKED
            self.chunked_out = True
        else:
            tail = b""
            self.close_after = True  # HTTP/1.0 and unknown length: the close ends the body
        ex = self.exchange
        if (
            self.close_after
            or self.client_eof
            or self.rt.draining
            or (ex is not None and not ex.keep_alive)
        ):
            self.close_after = True
            tail += _CLOSE
        elif request.version == b"1.0":
            tail += _KEEP_ALIVE
        line = STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status
        rendered = b"".join([b"%s: %s\r\n" % h for h in headers]) if headers else b""
        self.out.append(b"%s%s%s\r\n" % (line, rendered, tail))

    def send_body(self, data: bytes) -> None:
        if not self.body_allowed or not data:
            return
        self.out.append(chunk(data) if self.chunked_out else data)
        if len(self.out) > 64:
            self.flush()

    def end_response(self, trailers: Headers | None) -> None:
        if self.chunked_out and self.body_allowed:
            self.out.append(last_chunk(trailers))
            self.chunked_out = False

    def send_continue(self) -> None:
        self.out.append(CONTINUE_100)
        self.flush()

    def abort(self) -> None:
        """Close without completing the response: the client must see a truncated body."""
        self.chunked_out = False
        self.close_after = True
        self._close()

    def set_reading(self, reason: int, on: bool) -> None:
        t = self.transport
        if t is None or self.closed:
            return
        before = self.paused
        after = before & ~reason if on else before | reason
        self.paused = after
        if before and not after:
            t.resume_reading()
        elif after and not before:
            t.pause_reading()

    def exchange_finished(self, exchange: ExchangeCore, keep_alive: bool) -> None:
        if exchange is not self.exchange:
            return
        self.exchange = None
        if not keep_alive or self.close_after or self.client_eof:
            self._close()
            return
        rt = self.rt
        self.deadline = perf_counter() + rt.settings.idle_timeout
        self.codec.response_finished()
        if self.paused & PAUSE_PIPELINE and not self.codec.backlogged:
            self.set_reading(PAUSE_PIPELINE, True)

    def open_tunnel(self) -> None:
        self.tunnel = True

    def write_raw(self, data: bytes) -> None:
        self.out.append(data)

    def flush(self) -> None:
        out = self.out
        if not out:
            return
        self.out = []
        t = self.transport
        if t is not None and not self.closed and not t.is_closing():
            t.write(out[0] if len(out) == 1 else b"".join(out))

    # -- housekeeping ---------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        ex = self.exchange
        if ex is not None:
            ex.sweep(now, self.rt.settings.stream_idle_timeout)
            return
        if self.codec.idle:
            if now > self.deadline:
                self._close()
            return
        if self.header_started is None:
            self.header_started = now
        elif now - self.header_started > self.rt.settings.header_timeout:
            self.protocol_error(408, "timed out reading the request head")
            self.flush()

    def drain(self) -> None:
        if self.exchange is None and not self.tunnel:
            self._close()

    def _close(self) -> None:
        self.flush()
        t = self.transport
        if t is not None and not t.is_closing():
            t.close()
