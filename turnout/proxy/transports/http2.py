"""Client-facing HTTP/2 transport: asyncio glue for ``Http2ServerConnection``.

``Http2Transport`` owns the socket of one HTTP/2 connection (h2c with prior knowledge,
handed over by ``Http1Transport`` when the first bytes are the connection preface, or
TLS with ALPN ``h2``, see ``negotiated_h2``). Each request stream gets an
``Http2Stream``, the ``Downstream`` of its own ``Exchange``, so an exchange behaves the
same whatever the client's HTTP version; the stream translates its calls into codec
calls on its stream id.

Writes are coalesced: the codec's output goes out once at the end of each socket read,
and ``flush()`` calls made by exchanges (upstream data, timers) schedule a single write
per event-loop turn for the whole connection, however many streams asked.

Backpressure, both ways: a stream whose exchange pauses reading stops acknowledging that
stream's DATA (the client's window closes); a stream whose client window is closed, or a
full socket (``pause_writing``), buffers response bytes in the codec up to a bound and
then pauses the exchange's upstream (``downstream_writable(False)``).

Housekeeping (the runtime's sweeper, once a second): the preface must arrive within the
header timeout; a connection without streams closes after the idle timeout; each
exchange sweeps itself (connect timeout, stream idle timeout); a finished response that
the client never lets us send (window kept closed) is reset after the stream idle
timeout. ``drain`` sends GOAWAY with the last stream id, lets the streams in flight
finish and then closes. A connection that failed (a flood, a protocol error) is aborted
if its GOAWAY cannot be delivered within ``CLOSE_GRACE`` seconds.

Errors stay as local as they can: a request the codec refuses, or an exception while one
stream is handled, answers or resets that stream only; only a connection-level protocol
error (or a bug in the codec itself) ends the connection.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from h2.errors import ErrorCodes

from turnout.proxy.exchange_core import ExchangeCore
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.http2 import PREFACE, Http2ServerConnection
from turnout.proxy.runtime import Runtime
from turnout.proxy.streams import Exchange
from turnout.proxy.transports.accept import admit

if TYPE_CHECKING:
    from turnout.proxy.routing.table import PortTable
    from turnout.proxy.snapshot.tables import RouteAction, Snapshot

log = logging.getLogger("turnout.proxy")

__all__ = ["PREFACE", "Http2Stream", "Http2Transport", "negotiated_h2"]

# Seconds a failed or drained connection may take to deliver its last bytes before the
# socket is aborted (a client that stopped reading would otherwise keep it forever).
CLOSE_GRACE: Final = 5.0


def negotiated_h2(transport: asyncio.BaseTransport) -> bool:
    """True when the TLS handshake of ``transport`` selected ALPN ``h2``."""
    ssl_object: Any = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return False
    return bool(ssl_object.selected_alpn_protocol() == "h2")


class Http2Stream:
    """One request stream: the ``Downstream`` of its ``Exchange``."""

    __slots__ = (
        "client_cert",
        "client_ip",
        "client_json",
        "conn",
        "exchange",
        "paused",
        "progress",
        "scheme",
        "sid",
        "stalled_since",
        "tls_listener",
    )

    def __init__(self, conn: Http2Transport, sid: int) -> None:
        self.conn = conn
        self.sid = sid
        self.scheme = conn.scheme
        self.client_ip = conn.client_ip
        self.client_json = conn.client_json
        self.tls_listener = conn.tls_listener
        self.client_cert = conn.client_cert
        self.exchange: Exchange | None = None
        self.paused = 0  # reasons the exchange stopped reading (a bitmask)
        self.progress = -1  # response bytes sent at the last sweep (finished streams)
        self.stalled_since = 0.0

    def send_response(self, head: ResponseHead, request: RequestHead) -> None:
        status = head.status
        if status < 200:
            if status != 101:  # never asked for: requests over HTTP/2 never upgrade
                self.conn.codec.send_informational(self.sid, status, head.headers)
            return
        self.conn.codec.send_response(self.sid, head, request.method == b"HEAD")

    def send_body(self, data: bytes) -> None:
        self.conn.codec.send_body(self.sid, data)

    def end_response(self, trailers: Headers | None) -> None:
        self.conn.codec.end_response(self.sid, trailers)

    def send_continue(self) -> None:
        self.conn.codec.send_informational(self.sid, 100, [])
        self.conn.flush()

    def abort(self) -> None:
        """The response cannot be completed: reset the stream so it never looks whole."""
        self.exchange = None
        self.conn.codec.reset(self.sid, ErrorCodes.INTERNAL_ERROR)
        self.conn.flush()

    def set_reading(self, reason: int, on: bool) -> None:
        before = self.paused
        after = before & ~reason if on else before | reason
        self.paused = after
        if bool(before) != bool(after):
            self.conn.codec.set_reading(self.sid, not after)

    def exchange_finished(self, exchange: ExchangeCore, keep_alive: bool) -> None:
        # keep_alive is a connection matter in HTTP/1.1; the codec resets a stream whose
        # request was not complete once its response is out.
        if exchange is self.exchange:
            self.exchange = None

    def open_tunnel(self) -> None:
        # Unreachable: the codec never sets ``RequestHead.upgrade`` (no extended CONNECT).
        raise RuntimeError("tunnels are not supported over HTTP/2")

    def write_raw(self, data: bytes) -> None:
        raise RuntimeError("raw writes are not supported over HTTP/2")

    def flush(self) -> None:
        self.conn.flush()


class Http2Transport:
    """An asyncio protocol by duck typing, like ``Http1Transport``."""

    __slots__ = (
        "_snapshot",
        "_table",
        "client_cert",
        "client_eof",
        "client_ip",
        "client_json",
        "closed",
        "closing_since",
        "codec",
        "deadline",
        "key",
        "preface_seen",
        "rt",
        "scheme",
        "streams",
        "tls_listener",
        "transport",
        "write_scheduled",
    )

    def __init__(self, rt: Runtime, key: str, scheme: bytes = b"http") -> None:
        self.rt = rt
        self.key = key
        self.scheme = scheme
        self.codec = Http2ServerConnection(self, rt.settings.limits)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Http2Stream] = {}
        self.client_ip = b"-"
        self.client_json = b'"-"'
        # TLS: the listener the client's SNI selected (a request for another is misdirected)
        self.tls_listener: tuple[str, str] | None = None
        self.client_cert: bytes | None = None  # x-forwarded-client-cert (mutual TLS)
        self.closed = False
        self.client_eof = False
        self.write_scheduled = False
        self.deadline = 0.0
        self.closing_since = 0.0  # when the socket was asked to close (0: not yet)
        self.preface_seen = False  # the client's preface and SETTINGS arrived
        self._snapshot: Snapshot | None = None
        self._table: PortTable[RouteAction] | None = None

    # -- the asyncio protocol interface ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        rt = self.rt
        admitted = admit(rt, self, self.key, self.scheme, transport)
        if admitted is None:
            return
        self.client_ip, self.client_json, self.tls_listener, self.client_cert = admitted
        self.deadline = perf_counter() + rt.settings.header_timeout
        if rt.draining:
            self.codec.drain()
        self._write_out()  # our SETTINGS (the server preface)

    def data_received(self, data: bytes) -> None:
        codec = self.codec
        try:
            codec.receive(data)
        except Exception:
            self.internal_error()
            return
        if not self.preface_seen and codec.ready:
            # Started in time: from now on an empty connection may idle this long.
            self.preface_seen = True
            if not self.streams:
                self.deadline = perf_counter() + self.rt.settings.idle_timeout
        self._write_out()

    def eof_received(self) -> bool:
        self.client_eof = True
        if self.closing_since or self.codec.closed:
            return False  # we were closing anyway: done
        # Streams still waiting for request bytes can never complete. Over TLS no stream
        # can: the SSL transport closes right after this call and drops later writes
        # (see Http1Transport.eof_received); what is written now still goes out.
        tls = self.scheme == b"https"
        for st in list(self.streams.values()):
            ex = st.exchange
            if ex is not None and (tls or not ex.request_done):
                self.codec.reset(st.sid, ErrorCodes.CANCEL)
        self._write_out()
        # Keep the socket open for writing while responses are still going out.
        return bool(self.streams) and not self.closed and not tls

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        rt = self.rt
        rt.stats.active_connections -= 1
        streams = self.streams
        self.streams = {}
        for st in streams.values():
            ex = st.exchange
            if ex is not None:
                st.exchange = None
                ex.downstream_lost()
        rt.connection_closed(self)

    def pause_writing(self) -> None:
        self.codec.output_blocked(True)

    def resume_writing(self) -> None:
        self.codec.output_blocked(False)
        self._write_out()

    # -- codec events (Http2Events) -------------------------------------------------------

    def request_received(self, stream_id: int, head: RequestHead) -> None:
        rt = self.rt
        snap = rt.snapshot
        if snap is not self._snapshot:
            self._snapshot = snap
            self._table = snap.sockets.get(self.key)
        st = Http2Stream(self, stream_id)
        self.streams[stream_id] = st
        ex = st.exchange = Exchange(rt, st, head, perf_counter())
        try:
            ex.start(self._table)
        except Exception:
            self._stream_crashed(st)

    def request_body(self, stream_id: int, data: bytes) -> None:
        st = self.streams.get(stream_id)
        if st is not None and st.exchange is not None:
            try:
                st.exchange.request_body(data)
            except Exception:
                self._stream_crashed(st)

    def request_complete(self, stream_id: int, trailers: Headers | None) -> None:
        st = self.streams.get(stream_id)
        if st is not None and st.exchange is not None:
            try:
                st.exchange.request_complete(trailers)
            except Exception:
                self._stream_crashed(st)

    def request_failed(self, stream_id: int, status: int, message: str) -> None:
        self.rt.stats.protocol_errors += 1
        st = self.streams.pop(stream_id, None)
        if st is not None and st.exchange is not None:
            ex = st.exchange
            st.exchange = None
            ex.abandon(status)
        self._stream_gone()

    def request_refused(self, status: int, message: str) -> None:
        self.rt.stats.protocol_errors += 1
        if status:
            self.rt.refused(status, self.client_json)

    def stream_writable(self, stream_id: int, writable: bool) -> None:
        st = self.streams.get(stream_id)
        if st is not None and st.exchange is not None:
            st.exchange.downstream_writable(writable)

    def stream_closed(self, stream_id: int, reset: bool) -> None:
        st = self.streams.pop(stream_id, None)
        if st is not None and st.exchange is not None and reset:
            ex = st.exchange
            st.exchange = None
            ex.downstream_lost()
        self._stream_gone()

    def _stream_gone(self) -> None:
        if not self.streams:
            self.deadline = perf_counter() + self.rt.settings.idle_timeout
            if self.codec.draining or self.client_eof:
                self.flush()  # the write closes the connection (see _write_out)

    def _stream_crashed(self, st: Http2Stream) -> None:
        """A bug surfaced while one stream was handled: answer 500 or reset that stream."""
        log.exception("internal error on an HTTP/2 stream")
        self.rt.stats.internal_errors += 1
        ex = st.exchange
        st.exchange = None
        self.streams.pop(st.sid, None)
        if ex is not None:
            try:
                ex.abandon(500)
            except Exception:
                log.exception("while abandoning the exchange")
        self.codec.reply_error(st.sid, 500, "internal gateway error")
        self._stream_gone()
        self.flush()

    def internal_error(self) -> None:
        """A bug in the connection's own handling: GOAWAY, drop every stream, close."""
        log.exception("internal error on an HTTP/2 connection")
        self.rt.stats.internal_errors += 1
        try:
            self.codec.close(ErrorCodes.INTERNAL_ERROR, "internal gateway error")
        except Exception:
            log.exception("while closing the HTTP/2 connection")
        for st in list(self.streams.values()):
            self.stream_closed(st.sid, True)
        self._write_out()
        self._close()

    # -- output ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the codec's output once, at the end of this event-loop turn."""
        if not self.write_scheduled and not self.closed:
            self.write_scheduled = True
            self.rt.loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        self.write_scheduled = False
        t = self.transport
        if t is None or self.closed:
            return
        codec = self.codec
        data = codec.data_to_send()
        if t.is_closing() or self.closing_since:
            return
        if data:
            t.write(data)
        if not t.get_write_buffer_size():
            codec.output_drained()
        if codec.closed:
            if codec.error:
                self.rt.stats.protocol_errors += 1
                log.debug("closing an HTTP/2 connection: %s", codec.error)
            self._close()
        elif not self.streams and (codec.draining or self.client_eof):
            self._close()

    # -- housekeeping ---------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        if self.closed:
            return
        t = self.transport
        if self.closing_since:
            if t is not None and now - self.closing_since > CLOSE_GRACE:
                t.abort()  # the client neither reads what is left nor hangs up
            return
        settings = self.rt.settings
        codec = self.codec
        idle = settings.stream_idle_timeout
        for st in list(self.streams.values()):
            ex = st.exchange
            if ex is not None:
                ex.sweep(now, idle)
                continue
            # Finished upstream side, response still waiting for the client's window.
            progress = codec.stream_progress(st.sid)
            if progress is None:
                continue
            if progress != st.progress:
                st.progress = progress
                st.stalled_since = now
            elif idle and now - st.stalled_since > idle:
                codec.reset(st.sid, ErrorCodes.CANCEL)
        if not self.streams and now > self.deadline:
            # Idle (or, before the preface arrived, too slow to start): say goodbye.
            codec.close(ErrorCodes.NO_ERROR, "idle timeout" if codec.ready else "")
            self._write_out()
            self._close()
            return
        self._write_out()

    def drain(self) -> None:
        self.codec.drain()
        self._write_out()

    def _close(self) -> None:
        """Lingering close: FIN after the queued frames (our GOAWAY), but keep reading (and
        discarding) until the client hangs up, so that the kernel does not answer its
        in-flight frames with a RST that would destroy the GOAWAY before it is read. The
        sweeper aborts the socket after ``CLOSE_GRACE``."""
        t = self.transport
        if t is None or self.closing_since or t.is_closing():
            return
        self.closing_since = perf_counter()
        if t.can_write_eof():
            t.write_eof()
        else:
            t.close()  # TLS cannot half-close
