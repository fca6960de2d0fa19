"""Streams and responses of the HTTP/2 server codec: per-stream state, response framing
with flow control, stream close and reset, and the connection's shutdown.

``Http2Streams`` is the half of ``Http2ServerConnection`` (``protocols/http2.py``) that
sends: the connection class adds the receiving half (h2 events → the handler). See that
module's docstring for the flow-control and framing rules both halves keep.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Final, Protocol

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from hyperframe.frame import GoAwayFrame

from turnout.core.headers import H2_CONNECTION_SPECIFIC
from turnout.proxy.protocols.heads import NO_BODY_STATUSES, Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.http2_flood import FloodGuard
from turnout.proxy.protocols.http2_overrides import HIGHEST_STREAM_ID, ServerH2Connection

# Response bytes buffered per stream while the client's window is closed or the socket
# is full, before the upstream is paused; the same budget as the Exchange's own buffer.
STREAM_SEND_BUFFER: Final = 256 * 1024
# ... and resumed once the buffer drained to this (hysteresis: no pause/resume flapping).
STREAM_SEND_RESUME: Final = 64 * 1024

# Fields that are meaningless (or dangerous) in HTTP/2 and never sent in a response.
CONNECTION_SPECIFIC: Final = H2_CONNECTION_SPECIFIC
_BAD_OUT: Final = re.compile(rb"[\x00\r\n]")


class Http2Events(Protocol):
    """What the codec reports to its owner (the transport)."""

    def request_received(self, stream_id: int, head: RequestHead) -> None: ...
    def request_body(self, stream_id: int, data: bytes) -> None: ...
    def request_complete(self, stream_id: int, trailers: Headers | None) -> None: ...
    def request_failed(self, stream_id: int, status: int, message: str) -> None:
        """A dispatched request turned bad mid-body (413, content-length): drop it; the
        codec answers ``status`` or resets the stream itself."""

    def request_refused(self, status: int, message: str) -> None:
        """A request was refused before dispatch: answered with ``status``, or reset
        when ``status`` is 0. For counting only."""

    def stream_writable(self, stream_id: int, writable: bool) -> None: ...
    def stream_closed(self, stream_id: int, reset: bool) -> None:
        """A dispatched stream is gone: completed, or reset (either side) when ``reset``."""


class StreamState:
    """What the codec keeps per open stream."""

    __slots__ = (
        "announced",
        "blocked",
        "body_allowed",
        "content_length",
        "dead",
        "end_sent",
        "ending",
        "head",
        "out",
        "out_off",
        "out_size",
        "paused",
        "queued",
        "received",
        "request_done",
        "response_started",
        "sent",
        "sid",
        "trailers",
        "unacked",
    )

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.announced = False  # the handler knows it (request_received was called)
        self.request_done = False
        self.received = 0  # request body bytes
        self.content_length: int | None = None
        self.paused = False  # the handler stopped reading: hold acknowledgements
        self.unacked = 0  # flow-controlled bytes received but not acknowledged
        self.response_started = False
        self.head: list[tuple[bytes, bytes]] | None = None  # final HEADERS not sent yet
        self.body_allowed = True
        self.out: deque[bytes] = deque()  # response bytes waiting for window
        self.out_off = 0  # offset into out[0]
        self.out_size = 0
        self.blocked = False  # told the handler stream_writable(False)
        self.ending = False  # end_response was called
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.end_sent = False
        self.sent = 0  # response body bytes framed (progress, for stall detection)
        self.dead = False  # h2 closed it in the batch being processed; an event follows
        self.queued = False  # in the connection's list of streams to frame at the flush


class Http2Streams:
    """The sending half of one client connection (``Http2ServerConnection`` is the whole)."""

    __slots__ = (
        "_dirty",
        "_flood",
        "_h2",
        "_handler",
        "_output_blocked",
        "_raw",
        "_receiving",
        "_streams",
        "closed",
        "error",
    )

    _h2: ServerH2Connection
    _handler: Http2Events
    _flood: FloodGuard
    _streams: dict[int, StreamState]
    _dirty: list[StreamState]  # streams with output to frame at the next flush
    _raw: list[bytes]  # frames written outside h2 (the graceful GOAWAY)
    _output_blocked: bool
    _receiving: bool  # inside receive(): events of the batch are still to come
    closed: bool  # GOAWAY sent (or the peer's received): nothing more to do
    error: str  # why, when the client made the connection fail

    # -- state ---------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def draining(self) -> bool:
        return self._h2.refuse_above != HIGHEST_STREAM_ID

    def stream_progress(self, stream_id: int) -> int | None:
        """Response bytes framed so far on a stream (``None`` once it is gone)."""
        st = self._streams.get(stream_id)
        return None if st is None else st.sent

    def pending_output(self, stream_id: int) -> int:
        st = self._streams.get(stream_id)
        return 0 if st is None else st.out_size

    # -- stream lifecycle and resets ------------------------------------------------------

    def _ack(self, sid: int, n: int) -> None:
        if self.closed:
            return
        try:
            self._h2.acknowledge_received_data(n, sid)
        except ProtocolError:  # the stream closed inside h2 meanwhile
            pass

    def _count_reset(self) -> None:
        if self._flood.reset_counted():
            self._calm("too many stream resets (rapid reset)")

    def _reset(self, st: StreamState, code: ErrorCodes, counted: bool = False) -> None:
        if not self.closed and not st.dead:
            self._h2._reset_quietly(st.sid, code)
        if counted:
            self._count_reset()
        self._close_stream(st, True)

    def reset(self, stream_id: int, code: ErrorCodes = ErrorCodes.INTERNAL_ERROR) -> None:
        """Reset a stream (the gateway gives up on it: an upstream failure, a timeout)."""
        st = self._streams.get(stream_id)
        if st is not None:
            self._reset(st, code)

    def _fail_request(self, st: StreamState, status: int, message: str) -> None:
        started = st.response_started
        self._handler.request_failed(st.sid, status, message)
        if self._streams.get(st.sid) is not st:
            return
        st.announced = False  # the handler let go of it
        if started:
            self._reset(st, ErrorCodes.CANCEL)
        else:
            self._local_reply(st, status, message)

    def _close_stream(self, st: StreamState, reset: bool) -> None:
        if self._streams.pop(st.sid, None) is None:
            return
        if st.unacked:
            n, st.unacked = st.unacked, 0
            self._ack(st.sid, n)
        st.out.clear()
        st.out_size = 0
        st.head = None
        if st.announced:
            st.announced = False
            self._handler.stream_closed(st.sid, reset)

    def _lost(self, st: StreamState) -> None:
        """A send found the stream closed inside h2."""
        st.out.clear()
        st.out_size = 0
        st.head = None
        if self._receiving:
            st.dead = True  # the event that closed it is in this batch: it finishes it
        else:
            self._close_stream(st, True)

    # -- response ------------------------------------------------------------------------

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        st = self._streams.get(stream_id)
        if st is None or st.response_started or st.dead or self.closed:
            return
        block = [(b":status", b"%d" % status)]
        block.extend(response_fields(headers))
        try:
            self._h2.send_headers(stream_id, block)
        except ProtocolError:
            self._lost(st)

    def send_response(self, stream_id: int, head: ResponseHead, head_request: bool) -> None:
        """Hold the final response head; it leaves with the body, the end or the flush."""
        st = self._streams.get(stream_id)
        if st is None or st.response_started or st.dead or self.closed:
            return
        status = head.status
        block = [(b":status", b"%d" % status)]
        block.extend(response_fields(head.headers))
        cl = head.content_length
        if cl is not None and status != 204:
            block.append((b"content-length", b"%d" % cl))
        if head_request or status in NO_BODY_STATUSES:
            st.body_allowed = False
        st.response_started = True
        st.head = block
        self._queue(st)

    def send_body(self, stream_id: int, data: bytes) -> None:
        """Queue response bytes; they are framed at the next ``data_to_send``."""
        st = self._streams.get(stream_id)
        if st is None or not st.body_allowed or st.ending or not data or st.dead:
            return
        st.out.append(data)
        st.out_size += len(data)
        self._queue(st)
        if st.out_size > STREAM_SEND_BUFFER and not st.blocked and st.announced:
            st.blocked = True
            self._handler.stream_writable(stream_id, False)

    def end_response(self, stream_id: int, trailers: Headers | None) -> None:
        st = self._streams.get(stream_id)
        if st is None or st.ending or st.dead:
            return
        st.ending = True
        if trailers:
            fields = list(response_fields(trailers))
            st.trailers = fields or None
        self._queue(st)

    def _queue(self, st: StreamState) -> None:
        # Framing waits for the flush (once per event-loop turn), so a head, its body and
        # its end that arrive together leave as HEADERS + DATA(END_STREAM).
        if not st.queued:
            st.queued = True
            self._dirty.append(st)

    def reply_error(self, stream_id: int, status: int, message: str) -> None:
        """Answer a stream with a small JSON error (the handler gave it up first)."""
        st = self._streams.get(stream_id)
        if st is None or st.response_started:
            if st is not None:
                self._reset(st, ErrorCodes.INTERNAL_ERROR)
            return
        st.announced = False
        self._local_reply(st, status, message)

    def _local_reply(self, st: StreamState, status: int, message: str) -> None:
        body = b'{"error":"bad_request","message":%s}\n' % json.dumps(message).encode()
        st.response_started = True
        st.head = [
            (b":status", b"%d" % status),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ]
        st.out.append(body)
        st.out_size += len(body)
        st.ending = True
        self._pump(st)

    def _emit_head(self, st: StreamState, end: bool) -> bool:
        block = st.head
        st.head = None
        if block is None:
            return True
        try:
            self._h2.send_headers(st.sid, block, end_stream=end)
        except ProtocolError:
            self._lost(st)
            return False
        return True

    def _pump(self, st: StreamState) -> None:
        """Send what the windows allow; end the stream when everything is out."""
        if self.closed or st.dead:
            return
        h2 = self._h2
        sid = st.sid
        if st.head is not None and (st.out_size or st.ending):
            end = st.ending and not st.out_size and st.trailers is None
            if not self._emit_head(st, end):
                return
            if end:
                self._ended(st)
                return
        if st.out_size and not self._output_blocked:
            out = st.out
            max_frame = h2.max_outbound_frame_size
            try:
                while st.out_size:
                    window = h2.local_flow_control_window(sid)
                    if window <= 0:
                        break
                    size = window if window < max_frame else max_frame
                    first = out[0]
                    off = st.out_off
                    avail = len(first) - off
                    if avail <= size:
                        piece = first if not off else first[off:]
                        out.popleft()
                        st.out_off = 0
                    else:
                        piece = first[off : off + size]
                        st.out_off = off + size
                    st.out_size -= len(piece)
                    st.sent += len(piece)
                    last = not st.out_size and st.ending and st.trailers is None
                    h2.send_data(sid, piece, end_stream=last)
                    if last:
                        self._ended(st)
                        return
            except ProtocolError:
                self._lost(st)
                return
        if st.ending and not st.out_size and not st.end_sent:
            try:
                if st.trailers is not None:
                    h2.send_headers(sid, st.trailers, end_stream=True)
                else:
                    h2.end_stream(sid)
            except ProtocolError:
                self._lost(st)
                return
            self._ended(st)
            return
        if st.blocked and st.out_size <= STREAM_SEND_RESUME:
            st.blocked = False
            if st.announced:
                self._handler.stream_writable(sid, True)

    def _ended(self, st: StreamState) -> None:
        st.end_sent = True
        if not st.request_done and not self.closed:
            # Answered before the request ended: tell the client to stop sending
            # (RFC 9113 §8.1); h2 skips it if the client's END_STREAM already arrived.
            self._h2._reset_quietly(st.sid, ErrorCodes.NO_ERROR)
        self._close_stream(st, False)

    def _pump_all(self) -> None:
        for st in list(self._streams.values()):
            if st.out_size or (st.ending and not st.end_sent):
                self._pump(st)

    # -- output --------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything to write now: queued responses framed as far as the windows allow,
        control frames, a graceful GOAWAY."""
        dirty = self._dirty
        if dirty:
            self._dirty = []
            streams = self._streams
            for st in dirty:
                st.queued = False
                if self.closed or streams.get(st.sid) is not st:
                    continue
                if st.out_size or st.ending:
                    self._pump(st)
                elif st.head is not None:
                    self._emit_head(st, False)  # a streamed response: its head goes now
        data = self._h2.data_to_send()
        raw = self._raw
        if raw:
            self._raw = []
            raw.insert(0, data)
            data = b"".join(raw)
        return data

    def output_drained(self) -> None:
        """The transport's write buffer is empty: the client reads what we send."""
        self._flood.control_mark = self._h2.control_frames

    def output_blocked(self, blocked: bool) -> None:
        """The socket is full (or writable again): stop (resume) framing DATA."""
        self._output_blocked = blocked
        if not blocked:
            self._pump_all()

    # -- shutdown ------------------------------------------------------------------------

    def drain(self) -> None:
        """Graceful GOAWAY: finish the streams in flight, refuse newer ones."""
        if self.closed or self.draining:
            return
        h2 = self._h2
        last = h2.highest_inbound_stream_id
        h2.refuse_above = last
        frame = GoAwayFrame(0)
        frame.last_stream_id = last
        frame.error_code = ErrorCodes.NO_ERROR
        self._raw.append(frame.serialize())

    def close(self, code: ErrorCodes = ErrorCodes.NO_ERROR, reason: str = "") -> None:
        """GOAWAY now (the gateway's decision: idle, internal error); every stream still
        open is reset."""
        if self.closed:
            return
        self._h2.close_connection(code, reason.encode() if reason else None)
        self._fail("")

    def _calm(self, reason: str) -> None:
        """The client abuses the protocol: GOAWAY(ENHANCE_YOUR_CALM) and give up."""
        if self.closed:
            return
        self._h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, reason.encode())
        self._fail(reason)

    def _fail(self, error: str) -> None:
        """Nothing more will be read or sent; ``error`` says why when the client is at
        fault (empty for an orderly close)."""
        self.closed = True
        self.error = error
        self._dirty = []
        for st in list(self._streams.values()):
            self._close_stream(st, True)


def response_fields(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Response (or trailer) fields for HTTP/2: lowercase names, none connection-specific,
    no pseudo-headers smuggled in by a filter, no value with CR, LF or NUL."""
    out: list[tuple[bytes, bytes]] = []
    bad = _BAD_OUT.search
    for name, value in headers:
        name = name.lower()
        if name in CONNECTION_SPECIFIC or not name or name[0] == 0x3A or bad(value):
            continue
        out.append((name, value))
    return out
