"""HTTP/2 server codec, sans-IO: bytes in, callbacks out, bytes to send pulled out.

``Http2ServerConnection`` wraps ``h2`` (python-hyper) for one client connection and turns
its events into the same protocol-neutral stream model the HTTP/1.1 codec produces: a
``RequestHead`` per stream, body chunks, trailers and end, and a close (normal or reset).
The rest of the gateway never branches on the HTTP version: the ``Exchange`` renders the
upstream request as HTTP/1.1 from the ``RequestHead`` built here.

Translation (RFC 9113 §8): ``:method``, ``:path`` (split into path and query, then the
same normalisation and rejection rules as HTTP/1.1: ``hosts.normalize_path``), and
``:authority`` (or ``host``) become the head's fields; regular fields keep their
(already lowercase) names. Framing and gateway-set fields are consumed exactly as the
HTTP/1.1 codec does (``http1.SPECIAL``); ``te: trailers`` is kept, because gRPC servers
check it. A request without ``content-length`` whose stream stays open after HEADERS is
forwarded chunked; trailers then follow the last chunk.

Two kinds of refusal, mirroring RFC 9113 §8.1.1:

* **Malformed** requests (duplicate or misplaced pseudo-headers, unknown pseudo-headers,
  a missing ``:method``/``:scheme``/``:path``, uppercase or non-token names, CR/LF/NUL or
  other control characters in values, connection-specific fields, ``te`` other than
  ``trailers``, a non-token method, a ``:path`` with spaces or non-ASCII bytes, a body
  that disagrees with ``content-length``) are answered with RST_STREAM(PROTOCOL_ERROR).
  ``h2`` validates most of this itself (``validate_inbound_headers=True``) but treats a
  failure as a *connection* error; ``_ServerH2`` narrows that to the one stream, so other
  streams on the connection carry on.
* Well-formed requests the gateway will not serve (a path escaping the root, a bad host,
  size limits, ``Expect`` other than ``100-continue``, CONNECT) get a small JSON error
  response on their stream, with the same statuses as HTTP/1.1 (400/413/414/417/431;
  501 for CONNECT, including extended CONNECT, which is not advertised).

Flood protections (reliability.md b2). Each one ends the connection with
GOAWAY(ENHANCE_YOUR_CALM); all the state they keep is a few counters and a deque of at
most ``RESET_BURST_LIMIT + 1`` ints:

* Rapid reset (CVE-2023-44487) and MadeYouReset (CVE-2025-8671): a *counted reset* is a
  client RST_STREAM before the response was complete, a reset the server had to send
  because of something the client did (a malformed request, DATA after END_STREAM, a
  flow-control violation on a stream, a body longer than its content-length) or a
  stream refused for exceeding ``MAX_CONCURRENT_STREAMS``. More than
  ``RESET_BURST_LIMIT`` counted resets among the last ``RESET_WINDOW`` streams opened
  closes the connection. This is stricter than Envoy's default (more than half of the
  streams premature once 500 were opened): any connection past that ratio breaks this
  rule first, after at most ~100 wasted streams. Streams opened and reset within the
  same read are never dispatched, so a reset flood costs no upstream work at all.
* Streams beyond ``MAX_CONCURRENT_STREAMS`` get RST_STREAM(REFUSED_STREAM) (``h2`` would
  end the whole connection) and count as resets.
* CONTINUATION flood (CVE-2024-27316 class): ``h2``'s frame buffer accepts at most
  ``CONTINUATION_FRAMES`` (64) frames per header block, each at most ``MAX_FRAME_SIZE``,
  so at most 1 MiB is buffered before it raises a connection error; the decoded list is
  capped at ``MAX_HEADER_LIST_SIZE`` (HPACK bomb, CVE-2016-6581) while decoding.
* PING / SETTINGS floods (CVE-2019-9512/9515) and every other automatic reply: control
  frames (PING and SETTINGS acks, RST_STREAM, GOAWAY) queued since the transport last
  reported its write buffer empty (``output_drained``) are capped at
  ``MAX_QUEUED_CONTROL_FRAMES``: a client that makes us answer but does not read is cut.
* Empty DATA frames without END_STREAM (CVE-2019-9518): more than
  ``MAX_EMPTY_DATA_FRAMES`` in a row.
* PRIORITY and unknown-type frames (CVE-2019-9513 priority churn): at most
  ``JUNK_FRAMES_PER_STREAM`` per stream opened (plus one stream's worth).

Flow control with backpressure: inbound DATA is acknowledged (WINDOW_UPDATE) only once the
handler consumed it while its stream was not paused (``set_reading``); while paused the
bytes are remembered and acknowledged on resume, so a slow upstream closes the client's
window instead of filling gateway memory. Each stream may have ``INITIAL_STREAM_WINDOW``
unacknowledged bytes, the connection ``CONNECTION_WINDOW``. Outbound, ``send_body``
frames what the peer's stream and connection windows allow and buffers the rest per
stream; beyond ``STREAM_SEND_BUFFER`` the handler is told ``stream_writable(False)`` (it
pauses the upstream) and ``True`` again once WINDOW_UPDATEs drained the buffer to
``STREAM_SEND_RESUME``. While the transport's socket is full (``output_blocked``) nothing
new is framed, so buffered DATA stays in the bounded per-stream buffers.

Responses are framed when the owner pulls ``data_to_send`` (once per event-loop turn),
so what arrived together leaves together: a bodiless answer is one HEADERS frame with
END_STREAM, a small one HEADERS + one DATA(END_STREAM). Trailers are a HEADERS frame
with END_STREAM (gRPC's ``grpc-status``). If a response ends before its request did, the
stream is reset with NO_ERROR afterwards (RFC 9113 §8.1).

Limits of ``h2`` worked around here (``_ServerH2`` overrides four of its private hooks;
the unit tests exercise each): malformed headers, content-length mismatches and excess
streams are connection errors in ``h2``; ``h2.close_connection`` makes every later send
fail, so a graceful drain writes its own GOAWAY frame and keeps the connection open for
the streams in flight. A client GOAWAY does close ``h2``'s state machine: streams still
in flight then end with the connection.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Final, Protocol, cast

from h2.config import H2Configuration
from h2.connection import AllowedStreamIDs, ConnectionInputs, H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamReset,
    TrailersReceived,
    UnknownFrameReceived,
    WindowUpdated,
)
from h2.exceptions import (
    DenialOfServiceError,
    InvalidBodyLengthError,
    ProtocolError,
    StreamClosedError,
)
from h2.frame_buffer import CONTINUATION_BACKLOG
from h2.settings import SettingCodes, Settings
from h2.stream import H2Stream, StreamClosedBy
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from turnout.core.headers import H2_CONNECTION_SPECIFIC
from turnout.proxy.protocols.heads import NO_BODY_STATUSES, Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.hosts import (
    InvalidTarget,
    normalize_path,
    path_needs_normalizing,
    split_authority,
)
from turnout.proxy.protocols.http1 import FORBIDDEN_TRAILERS, SPECIAL, Limits

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# -- limits ------------------------------------------------------------------------------
# Advertised in SETTINGS; h2 enforces it (we refuse the excess streams ourselves). 100 is
# the RFC 9113 §6.5.2 recommended minimum and what nginx, Envoy's edge guide and h2 use.
MAX_CONCURRENT_STREAMS: Final = 100
# Bytes a client may send on one stream before we acknowledge any: enough to keep a fast
# upload streaming (a 1 MiB window covers ~80 ms at 100 Mbit/s), small enough that a
# paused stream holds little memory.
INITIAL_STREAM_WINDOW: Final = 1 << 20
# Unacknowledged bytes over all streams of a connection: the most request body that one
# connection can make the gateway hold. Larger than a stream's window so that a few
# paused streams do not stall the others.
CONNECTION_WINDOW: Final = 16 << 20
# Largest frame we accept (the RFC's initial value): bounds one frame's buffering.
MAX_FRAME_SIZE: Final = 16384
# Decoded header list, counted as RFC 7541 does (name + value + 32 per field): 64 KiB,
# as reliability.md asks; larger blocks are a connection error (HPACK bomb defence).
MAX_HEADER_LIST_SIZE: Final = 65536
# h2's own cap on frames per header block (HEADERS + CONTINUATIONs), relied upon: with
# MAX_FRAME_SIZE it bounds a pending header block to 64 × 16 KiB = 1 MiB.
CONTINUATION_FRAMES: Final = CONTINUATION_BACKLOG
# Response bytes buffered per stream while the client's window is closed or the socket
# is full, before the upstream is paused; the same budget as the Exchange's own buffer.
STREAM_SEND_BUFFER: Final = 256 * 1024
# ... and resumed once the buffer drained to this (hysteresis: no pause/resume flapping).
STREAM_SEND_RESUME: Final = 64 * 1024
# Rapid-reset rule: more than RESET_BURST_LIMIT counted resets among the last
# RESET_WINDOW streams opened (10 %; a browser or gRPC client cancels far fewer).
RESET_WINDOW: Final = 1000
RESET_BURST_LIMIT: Final = 100
# Control frames we queued while the client did not read (Envoy's default is 1000).
MAX_QUEUED_CONTROL_FRAMES: Final = 1000
# Consecutive DATA frames with neither payload nor END_STREAM: they carry nothing, so a
# client has no reason to send many (Envoy allows 1; 100 leaves room for odd clients).
MAX_EMPTY_DATA_FRAMES: Final = 100
# PRIORITY and unknown-type frames per stream opened (Envoy's priority-frame default;
# a browser sends one or two per stream, far below it).
JUNK_FRAMES_PER_STREAM: Final = 100

# How many closed streams h2 remembers (to tell a late frame on a reset stream, a stream
# error, from a frame on a stream that never existed). h2's default, 65536, costs several
# MiB per long-lived connection; the last thousand cover any frame still in flight.
CLOSED_STREAMS_REMEMBERED: Final = 1000

# Fields that are meaningless (or dangerous) in HTTP/2 and never sent in a response.
CONNECTION_SPECIFIC: Final = H2_CONNECTION_SPECIFIC
# Control frames counted against MAX_QUEUED_CONTROL_FRAMES.
_CONTROL_FRAMES: Final = frozenset({PingFrame, SettingsFrame, RstStreamFrame, GoAwayFrame})
_HIGHEST_STREAM_ID: Final = (1 << 31) - 1

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# h2 refuses NUL, CR and LF; the other control characters are refused here so that no
# byte an HTTP/1.1 upstream could misread is forwarded.
_BAD_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_OUT: Final = re.compile(rb"[\x00\r\n]")
_PATH: Final = re.compile(rb"[\x21-\x7e]+")
_SANE_ID: Final = re.compile(rb"[\x21-\x7e]{1,128}")

# :authority values seen recently -> routing host; most traffic uses a handful.
_AUTHORITIES: dict[bytes, str] = {}


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


class _Malformed(Exception):
    """A malformed request: the stream is reset with PROTOCOL_ERROR."""


class _Rejected(Exception):
    """A well-formed request refused with an HTTP status on its own stream."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StreamRejected(Event):
    """Not an ``h2`` event: ``_ServerH2`` reset or refused a stream itself."""

    def __init__(self, stream_id: int, new: bool, counted: bool, message: str) -> None:
        self.stream_id = stream_id
        self.new = new  # the stream was opened by this HEADERS frame
        self.counted = counted  # counts against the reset budget
        self.message = message


class _ServerH2(H2Connection):
    """``H2Connection`` with stream-level handling of what h2 treats as connection errors.

    Overrides (private h2 hooks as of h2 4.4; the unit tests cover each one):
    ``_receive_headers_frame`` (refuse excess streams, reset malformed requests),
    ``_get_or_create_stream`` (marks that HPACK decoding and connection checks passed),
    ``_receive_data_frame`` (content-length mismatch resets the stream) and
    ``_prepare_for_sending`` (counts queued control frames).
    """

    MAX_CLOSED_STREAMS = CLOSED_STREAMS_REMEMBERED

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        self.control_frames = 0  # control frames queued since the connection began
        self.refuse_above = _HIGHEST_STREAM_ID  # set by a graceful GOAWAY
        self._header_stream = 0  # the stream a HEADERS block reached, while decoding it

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        for frame in frames:
            if type(frame) in _CONTROL_FRAMES:
                self.control_frames += 1
        super()._prepare_for_sending(frames)

    def _get_or_create_stream(self, stream_id: int, allowed_ids: AllowedStreamIDs) -> H2Stream:
        stream = super()._get_or_create_stream(stream_id, allowed_ids)
        self._header_stream = stream_id
        return stream

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[Event]]:
        sid = frame.stream_id
        new = sid > self.highest_inbound_stream_id and sid not in self.streams
        if new and sid & 1:
            if sid > self.refuse_above:
                return self._refuse(frame, False, "the connection is shutting down")
            if self.open_inbound_streams >= self.local_settings.max_concurrent_streams:
                return self._refuse(frame, True, "too many concurrent streams")
        self._header_stream = 0
        try:
            return super()._receive_headers_frame(frame)
        except StreamClosedError:
            raise  # h2 handles frames on closed streams itself
        except ProtocolError as exc:
            if self._header_stream != sid or isinstance(exc, DenialOfServiceError):
                raise  # before the stream: HPACK or connection state, a connection error
            self._reset_quietly(sid, ErrorCodes.PROTOCOL_ERROR)
            return [], [StreamRejected(sid, new, True, str(exc))]
        finally:
            self._header_stream = 0

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list[Frame], list[Event]]:
        try:
            return super()._receive_data_frame(frame)
        except InvalidBodyLengthError as exc:
            sid = frame.stream_id
            self._reset_quietly(sid, ErrorCodes.PROTOCOL_ERROR)
            # The frame was counted against the connection window: hand it back.
            self.acknowledge_received_data(frame.flow_controlled_length, sid)
            return [], [StreamRejected(sid, False, True, str(exc))]

    def _refuse(
        self, frame: HeadersFrame, counted: bool, message: str
    ) -> tuple[list[Frame], list[Event]]:
        """RST_STREAM(REFUSED_STREAM) for a new stream, keeping HPACK state in step."""
        try:
            self.decoder.decode(frame.data, raw=True)
        except OversizedHeaderListError as exc:
            raise DenialOfServiceError(f"Oversized header block: {exc}") from exc
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"Error decoding header block: {exc}") from exc
        self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        sid = frame.stream_id
        self.highest_inbound_stream_id = sid
        # Later frames on it are stream errors (h2 answers them with RST_STREAM).
        self._closed_streams[sid] = StreamClosedBy.SEND_RST_STREAM
        rst = RstStreamFrame(sid)
        rst.error_code = ErrorCodes.REFUSED_STREAM
        return [rst], [StreamRejected(sid, True, counted, message)]

    def _reset_quietly(self, sid: int, code: ErrorCodes) -> None:
        """RST_STREAM unless the stream is closed already (both sides ended, or reset)."""
        stream = self.streams.get(sid)
        if stream is None:
            return  # closed and forgotten
        if stream.closed:
            if stream.closed_by is None:
                # Closed by an invalid transition, without a frame: send the reset, and
                # make later frames on it stream errors rather than connection errors.
                rst = RstStreamFrame(sid)
                rst.error_code = code
                self._prepare_for_sending([rst])
                stream.state_machine.stream_closed_by = StreamClosedBy.SEND_RST_STREAM
            return
        self.reset_stream(sid, code)


class _Stream:
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


class Http2ServerConnection:
    """One client connection. See the module docstring."""

    __slots__ = (
        "_control_mark",
        "_dirty",
        "_empty_data",
        "_h2",
        "_handler",
        "_junk",
        "_limits",
        "_opened",
        "_output_blocked",
        "_raw",
        "_receiving",
        "_resets",
        "_streams",
        "closed",
        "error",
        "peer_goaway",
        "ready",
    )

    def __init__(self, handler: Http2Events, limits: Limits) -> None:
        self._handler = handler
        self._limits = limits
        config = H2Configuration(
            client_side=False,
            header_encoding=None,  # bytes end to end
            validate_inbound_headers=True,
            # joins cookie crumbs (RFC 9113 §8.2.3), as an HTTP/1.1 upstream expects
            normalize_inbound_headers=True,
            # outbound fields are built here from sanitised heads (lowercase names, no
            # connection-specific fields, no CR/LF/NUL): h2's per-byte Python checks
            # would only cost time
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = self._h2 = _ServerH2(config)
        conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_STREAM_WINDOW,
                SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
                SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            },
        )
        conn.max_inbound_frame_size = MAX_FRAME_SIZE
        conn.decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
        conn.initiate_connection()
        # The connection window starts at 65535 whatever SETTINGS say (RFC 9113 §6.9.2).
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._streams: dict[int, _Stream] = {}
        self._dirty: list[_Stream] = []  # streams with output to frame at the next flush
        self._raw: list[bytes] = []  # frames written outside h2 (the graceful GOAWAY)
        self._opened = 0  # streams opened by the client (accepted, rejected, refused)
        self._resets: deque[int] = deque()  # ordinals (in _opened) of counted resets
        self._empty_data = 0
        self._junk = 0
        self._control_mark = 0  # control frames queued when the output last drained
        self._output_blocked = False
        self._receiving = False
        self.closed = False  # GOAWAY sent (or the peer's received): nothing more to do
        self.error = ""  # why, when the client made the connection fail
        self.ready = False  # the client's preface and SETTINGS arrived
        self.peer_goaway = False

    # -- state ---------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def draining(self) -> bool:
        return self._h2.refuse_above != _HIGHEST_STREAM_ID

    def stream_progress(self, stream_id: int) -> int | None:
        """Response bytes framed so far on a stream (``None`` once it is gone)."""
        st = self._streams.get(stream_id)
        return None if st is None else st.sent

    def pending_output(self, stream_id: int) -> int:
        st = self._streams.get(stream_id)
        return 0 if st is None else st.out_size

    # -- input ---------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self._h2.receive_data(data)
        except ProtocolError as exc:
            # h2 has queued GOAWAY with the right error code.
            self._fail(f"protocol error: {exc}")
            return
        self._receiving = True
        try:
            self._dispatch(events)
        finally:
            self._receiving = False
        if self._h2.control_frames - self._control_mark > MAX_QUEUED_CONTROL_FRAMES:
            self._calm("too many control frames queued for a client that does not read")

    def _dispatch(self, events: list[Event]) -> None:
        # Streams the client resets later in this same batch are never dispatched.
        doomed: set[int] | None = None
        for ev in events:
            if type(ev) is StreamReset and ev.remote_reset:
                if doomed is None:
                    doomed = set()
                doomed.add(ev.stream_id)
        skipped: set[int] | None = None
        streams = self._streams
        for ev in events:
            if self.closed:
                return
            kind = type(ev)
            if kind is DataReceived:
                self._on_data(cast(DataReceived, ev))
            elif kind is RequestReceived:
                req = cast(RequestReceived, ev)
                self._opened += 1
                if doomed is not None and req.stream_id in doomed:
                    if skipped is None:
                        skipped = set()
                    skipped.add(req.stream_id)
                    continue
                self._on_request(req)
            elif kind is WindowUpdated:
                sid = cast(WindowUpdated, ev).stream_id
                if sid:
                    st = streams.get(sid)
                    if st is not None:
                        self._pump(st)
                else:
                    self._pump_all()
            elif kind is StreamReset:
                self._on_reset(cast(StreamReset, ev), skipped)
            elif kind is TrailersReceived:
                self._on_trailers(cast(TrailersReceived, ev))
            elif kind is StreamRejected:
                self._on_rejected(cast(StreamRejected, ev))
            elif kind is RemoteSettingsChanged:
                self.ready = True
                self._pump_all()  # the initial window or frame size may have grown
            elif kind is PriorityUpdated or kind is UnknownFrameReceived:
                self._junk += 1
                if self._junk > JUNK_FRAMES_PER_STREAM * (self._opened + 1):
                    self._calm("too many PRIORITY or unknown frames")
            elif kind is ConnectionTerminated:
                # h2's state machine is closed now: nothing more can be sent.
                self.peer_goaway = True
                self._fail("")
            elif kind is PingReceived:
                pass  # acknowledged by h2; counted as a control frame
            # StreamEnded is handled with the event that carried END_STREAM;
            # SettingsAcknowledged, PingAckReceived: nothing to do.

    def _on_request(self, ev: RequestReceived) -> None:
        sid = ev.stream_id
        st = _Stream(sid)
        self._streams[sid] = st
        ended = ev.stream_ended is not None
        st.request_done = ended
        try:
            head = self._build_head(ev.headers, ended)
        except _Malformed as exc:
            self._reset(st, ErrorCodes.PROTOCOL_ERROR, counted=True)
            self._handler.request_refused(0, str(exc))
            return
        except _Rejected as exc:
            self._handler.request_refused(exc.status, exc.message)
            self._local_reply(st, exc.status, exc.message)
            return
        st.content_length = head.content_length
        st.announced = True
        self._handler.request_received(sid, head)
        if ended and self._streams.get(sid) is st:
            self._handler.request_complete(sid, None)

    def _on_data(self, ev: DataReceived) -> None:
        sid = ev.stream_id
        data = ev.data
        flow = ev.flow_controlled_length
        ended = ev.stream_ended is not None
        if data:
            self._empty_data = 0
        elif not ended:
            self._empty_data += 1
            if self._empty_data > MAX_EMPTY_DATA_FRAMES:
                self._calm("too many empty DATA frames")
                return
        st = self._streams.get(sid)
        if st is None or not st.announced or st.dead:
            # Nobody reads it (answered already, refused, or going away): give the
            # window back at once so other streams are not starved.
            if flow:
                self._ack(sid, flow)
            return
        st.received += len(data)
        limit = self._limits.max_body
        if limit and st.received > limit:
            if flow:
                self._ack(sid, flow)
            self._fail_request(st, 413, "request body too large")
            return
        if data:
            self._handler.request_body(sid, data)
        if flow:
            if st.paused and self._streams.get(sid) is st:
                st.unacked += flow
            else:
                self._ack(sid, flow)
        if ended and self._streams.get(sid) is st and not st.request_done:
            self._complete(st, None)

    def _on_trailers(self, ev: TrailersReceived) -> None:
        st = self._streams.get(ev.stream_id)
        if st is None or not st.announced or st.dead:
            return
        try:
            trailers = _filter_trailers(ev.headers)
        except _Malformed as exc:
            self._handler.request_failed(st.sid, 400, str(exc))
            self._reset(st, ErrorCodes.PROTOCOL_ERROR, counted=True)
            return
        self._complete(st, trailers or None)

    def _complete(self, st: _Stream, trailers: Headers | None) -> None:
        if st.content_length is not None and st.received != st.content_length:
            # h2 checks DATA against content-length, but not a stream ended by trailers.
            self._handler.request_failed(st.sid, 400, "body length differs from content-length")
            self._reset(st, ErrorCodes.PROTOCOL_ERROR, counted=True)
            return
        st.request_done = True
        self._handler.request_complete(st.sid, trailers)

    def _on_reset(self, ev: StreamReset, skipped: set[int] | None) -> None:
        sid = ev.stream_id
        st = self._streams.get(sid)
        if ev.remote_reset:
            # Premature: before the response was complete (Envoy's definition).
            if st is not None:
                premature = not st.end_sent
            else:
                premature = skipped is not None and sid in skipped
            if premature:
                self._count_reset()
        else:
            # h2 reset it because of what the client sent (MadeYouReset).
            self._count_reset()
        if st is not None:
            self._close_stream(st, True)

    def _on_rejected(self, ev: StreamRejected) -> None:
        if ev.new:
            self._opened += 1
        if ev.counted:
            self._count_reset()
        st = self._streams.get(ev.stream_id)
        if st is not None:
            if st.announced:
                self._handler.request_failed(st.sid, 400, ev.message)
            self._close_stream(st, True)
        else:
            self._handler.request_refused(0, ev.message)

    # -- request translation -------------------------------------------------------------

    def _build_head(self, headers: list[tuple[bytes, bytes]], ended: bool) -> RequestHead:
        limits = self._limits
        method = path = authority = scheme = b""
        host_value: bytes | None = None
        xff = rid = cl_value = expect = None
        regular: Headers = []
        index: dict[bytes, bytes] = {}
        count = size = 0
        bad_value = _BAD_VALUE.search
        token = _TOKEN.fullmatch
        for name, value in headers:
            if name[0] == 0x3A:  # ":" - h2 checked order, duplicates and names
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                elif name == b":scheme":
                    scheme = value
                else:  # :protocol (extended CONNECT, RFC 8441): not advertised
                    raise _Rejected(501, "extended CONNECT is not supported")
                continue
            count += 1
            size += len(name) + len(value)
            if bad_value(value) is not None:
                raise _Malformed("control character in a header value")
            if token(name) is None:
                raise _Malformed("invalid header name")
            if name in SPECIAL:
                if name == b"host":
                    host_value = value  # h2 checked it equals :authority if both
                elif name == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                elif name == b"x-request-id":
                    rid = value
                elif name == b"content-length":
                    cl_value = value  # h2 checked: digits, duplicates agree
                elif name == b"expect":
                    expect = value.strip().lower()
                elif name == b"te":
                    regular.append((name, value))  # only "trailers" gets here (h2)
                    index[name] = value
                # the rest: proxy-authorization, trailer, http2-settings, x-forwarded-*
            elif 0x5F in name:  # "_": dropped, as for HTTP/1.1 (see http1.on_header)
                continue
            else:
                regular.append((name, value))
                index[name] = index[name] + b"," + value if name in index else value
        if count > limits.max_headers:
            raise _Rejected(431, "too many request headers")
        if size > limits.max_header_bytes:
            raise _Rejected(431, "request header section too large")
        if token(method) is None:
            raise _Malformed("invalid method")
        if method == b"CONNECT":
            raise _Rejected(501, "CONNECT is not supported")
        if scheme != b"http" and scheme != b"https":
            raise _Malformed("invalid :scheme")
        if len(path) > limits.max_url:
            raise _Rejected(414, "request target too long")
        if _PATH.fullmatch(path) is None:
            raise _Malformed("invalid :path")
        if path[0] != 0x2F:  # "/"
            if path != b"*" or method != b"OPTIONS":
                raise _Malformed("invalid :path")
            query = b""
        else:
            if 0x23 in path:  # "#"
                raise _Rejected(400, "fragment in request target")
            path, _, query = path.partition(b"?")
            if path_needs_normalizing(path):
                try:
                    path = normalize_path(path)
                except InvalidTarget as exc:
                    raise _Rejected(400, str(exc)) from None
        if not authority:
            authority = host_value or b""
        if not authority:
            raise _Rejected(400, "missing :authority")
        host = _AUTHORITIES.get(authority, "")
        if not host:
            try:
                host, _port = split_authority(authority)
            except InvalidTarget as exc:
                raise _Rejected(400, str(exc)) from None
            if len(_AUTHORITIES) >= 1024:
                _AUTHORITIES.clear()
            _AUTHORITIES[authority] = host
        head = RequestHead(method, path, query, regular, authority, host, b"2", index)
        head.forwarded_for = xff
        if rid is not None and _SANE_ID.fullmatch(rid):
            head.request_id = rid
        if cl_value is not None:
            cl = int(cl_value)
            if ended and cl:
                raise _Malformed("content-length without a body")
            max_body = limits.max_body
            if max_body and cl > max_body:
                raise _Rejected(413, "request body too large")
            head.content_length = cl
        elif not ended:
            head.chunked = True  # forwarded chunked: the length is not known yet
        if expect is not None:
            if expect != b"100-continue":
                raise _Rejected(417, "unsupported Expect value")
            head.expect_continue = not ended
        return head

    # -- flow control and resets ---------------------------------------------------------

    def set_reading(self, stream_id: int, on: bool) -> None:
        """Pause (``on=False``) or resume acknowledging a stream's request body."""
        st = self._streams.get(stream_id)
        if st is None:
            return
        st.paused = not on
        if on and st.unacked:
            n, st.unacked = st.unacked, 0
            self._ack(stream_id, n)

    def _ack(self, sid: int, n: int) -> None:
        if self.closed:
            return
        try:
            self._h2.acknowledge_received_data(n, sid)
        except ProtocolError:  # the stream closed inside h2 meanwhile
            pass

    def _count_reset(self) -> None:
        resets = self._resets
        opened = self._opened
        resets.append(opened)
        while resets[0] <= opened - RESET_WINDOW:
            resets.popleft()
        if len(resets) > RESET_BURST_LIMIT:
            self._calm("too many stream resets (rapid reset)")

    def _reset(self, st: _Stream, code: ErrorCodes, counted: bool = False) -> None:
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

    def _fail_request(self, st: _Stream, status: int, message: str) -> None:
        started = st.response_started
        self._handler.request_failed(st.sid, status, message)
        if self._streams.get(st.sid) is not st:
            return
        st.announced = False  # the handler let go of it
        if started:
            self._reset(st, ErrorCodes.CANCEL)
        else:
            self._local_reply(st, status, message)

    def _close_stream(self, st: _Stream, reset: bool) -> None:
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

    def _lost(self, st: _Stream) -> None:
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
        block.extend(_response_fields(headers))
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
        block.extend(_response_fields(head.headers))
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
            fields = list(_response_fields(trailers))
            st.trailers = fields or None
        self._queue(st)

    def _queue(self, st: _Stream) -> None:
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

    def _local_reply(self, st: _Stream, status: int, message: str) -> None:
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

    def _emit_head(self, st: _Stream, end: bool) -> bool:
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

    def _pump(self, st: _Stream) -> None:
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

    def _ended(self, st: _Stream) -> None:
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
        self._control_mark = self._h2.control_frames

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


def _response_fields(headers: Headers) -> list[tuple[bytes, bytes]]:
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


def _filter_trailers(headers: list[tuple[bytes, bytes]]) -> Headers:
    out: Headers = []
    for name, value in headers:
        if _BAD_VALUE.search(value) is not None or _TOKEN.fullmatch(name) is None:
            raise _Malformed("invalid trailer field")
        if name not in FORBIDDEN_TRAILERS:
            out.append((name, value))
    return out
