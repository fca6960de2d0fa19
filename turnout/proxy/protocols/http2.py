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
  failure as a *connection* error; ``ServerH2Connection`` narrows that to the one stream, so other
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

Limits of ``h2`` worked around here (``ServerH2Connection`` overrides four of its private hooks;
the unit tests exercise each): malformed headers, content-length mismatches and excess
streams are connection errors in ``h2``; ``h2.close_connection`` makes every later send
fail, so a graceful drain writes its own GOAWAY frame and keeps the connection open for
the streams in flight. A client GOAWAY does close ``h2``'s state machine: streams still
in flight then end with the connection.

The codec's modules: this one (the connection, its receiving half and the limits it
advertises), ``http2_streams`` (per-stream state and the sending half: response framing,
close and reset, shutdown), ``http2_request`` (header list → ``RequestHead``),
``http2_flood`` (the flood counters and limits) and ``http2_overrides`` (the ``h2``
subclass; the ``h2`` pin in pyproject.toml follows it). Two parts of ``h2`` are replaced
by modules compiled with the hot path: HPACK (``hpack_codec``) and the checks of received
fields (``http2_fields``, with ``validate_inbound_headers`` off). Together they cut the
codec's CPU per request by 1.65× compiled (93.1 → 56.5 µs in ``bench/h2codec.py
--reference``) and a proxied h2c request's by 22-38 % (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Final, cast

from h2.config import H2Configuration
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
from h2.exceptions import ProtocolError
from h2.frame_buffer import CONTINUATION_BACKLOG
from h2.settings import SettingCodes, Settings

from turnout.proxy.protocols.heads import Headers
from turnout.proxy.protocols.http1 import Limits
from turnout.proxy.protocols.http2_flood import (
    JUNK_FRAMES_PER_STREAM,
    MAX_EMPTY_DATA_FRAMES,
    MAX_QUEUED_CONTROL_FRAMES,
    RESET_BURST_LIMIT,
    RESET_WINDOW,
    FloodGuard,
)
from turnout.proxy.protocols.http2_overrides import (
    CLOSED_STREAMS_REMEMBERED,
    ServerH2Connection,
    StreamRejected,
)
from turnout.proxy.protocols.http2_request import Malformed, Rejected, build_head, filter_trailers
from turnout.proxy.protocols.http2_streams import (
    CONNECTION_SPECIFIC,
    STREAM_SEND_BUFFER,
    STREAM_SEND_RESUME,
    Http2Events,
    Http2Streams,
    StreamState,
)

# The codec's public names, wherever in its modules they live.
__all__ = [
    "CLOSED_STREAMS_REMEMBERED",
    "CONNECTION_SPECIFIC",
    "CONNECTION_WINDOW",
    "CONTINUATION_FRAMES",
    "INITIAL_STREAM_WINDOW",
    "JUNK_FRAMES_PER_STREAM",
    "MAX_CONCURRENT_STREAMS",
    "MAX_EMPTY_DATA_FRAMES",
    "MAX_FRAME_SIZE",
    "MAX_HEADER_LIST_SIZE",
    "MAX_QUEUED_CONTROL_FRAMES",
    "PREFACE",
    "RESET_BURST_LIMIT",
    "RESET_WINDOW",
    "STREAM_SEND_BUFFER",
    "STREAM_SEND_RESUME",
    "Http2Events",
    "Http2ServerConnection",
    "StreamRejected",
]

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# -- limits ------------------------------------------------------------------------------
# (the flood limits are in http2_flood, the send buffers in http2_streams)
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


class Http2ServerConnection(Http2Streams):
    """One client connection. See the module docstring; the sending half is
    ``Http2Streams``."""

    __slots__ = ("_limits", "peer_goaway", "ready")

    def __init__(self, handler: Http2Events, limits: Limits) -> None:
        self._handler = handler
        self._limits = limits
        config = H2Configuration(
            client_side=False,
            header_encoding=None,  # bytes end to end
            # h2's checks and cookie joining, done by http2_fields instead (compiled, one
            # pass; called from ServerH2Connection._receive_headers_frame)
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            # outbound fields are built here from sanitised heads (lowercase names, no
            # connection-specific fields, no CR/LF/NUL): h2's per-byte Python checks
            # would only cost time
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = self._h2 = ServerH2Connection(config)
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
        self._streams = {}
        self._dirty = []
        self._raw = []
        self._flood = FloodGuard()
        self._output_blocked = False
        self._receiving = False
        self.closed = False
        self.error = ""
        self.ready = False  # the client's preface and SETTINGS arrived
        self.peer_goaway = False

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
        if self._flood.control_frames_exceeded(self._h2.control_frames):
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
                self._flood.opened += 1
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
                if self._flood.junk_frame():
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
        st = StreamState(sid)
        self._streams[sid] = st
        ended = ev.stream_ended is not None
        st.request_done = ended
        try:
            head = build_head(ev.headers, ended, self._limits)
        except Malformed as exc:
            self._reset(st, ErrorCodes.PROTOCOL_ERROR, counted=True)
            self._handler.request_refused(0, str(exc))
            return
        except Rejected as exc:
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
            self._flood.empty_data = 0
        elif not ended and self._flood.empty_data_frame():
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
            trailers = filter_trailers(ev.headers)
        except Malformed as exc:
            self._handler.request_failed(st.sid, 400, str(exc))
            self._reset(st, ErrorCodes.PROTOCOL_ERROR, counted=True)
            return
        self._complete(st, trailers or None)

    def _complete(self, st: StreamState, trailers: Headers | None) -> None:
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
            self._flood.opened += 1
        if ev.counted:
            self._count_reset()
        st = self._streams.get(ev.stream_id)
        if st is not None:
            if st.announced:
                self._handler.request_failed(st.sid, 400, ev.message)
            self._close_stream(st, True)
        else:
            self._handler.request_refused(0, ev.message)

    # -- flow control ----------------------------------------------------------------------

    def set_reading(self, stream_id: int, on: bool) -> None:
        """Pause (``on=False``) or resume acknowledging a stream's request body."""
        st = self._streams.get(stream_id)
        if st is None:
            return
        st.paused = not on
        if on and st.unacked:
            n, st.unacked = st.unacked, 0
            self._ack(stream_id, n)
