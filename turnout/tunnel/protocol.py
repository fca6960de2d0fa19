"""The tunnel's wire protocol: frame codec, per-stream state machine, flow control. Sans-IO.

Nothing here touches a socket or an event loop: ``TunnelConnection`` is fed the bytes of
each WebSocket binary message (``receive_frame``) and hands back events; calls such as
``send_data`` queue frames that the caller collects with ``data_to_send`` and sends, one
per WebSocket binary message. The shape follows h2's ``H2Connection``.

Frame layout (one WebSocket binary message carries exactly one frame; the WebSocket
already delimits messages, so frames carry no length field)::

    +---------+---------------------------+-----------------------------+
    | type u8 | stream_id u32 big-endian  | payload (rest of message)   |
    +---------+---------------------------+-----------------------------+

==========  ====  =========================================================  ==============
type        code  payload                                                    stream id
==========  ====  =========================================================  ==============
OPEN        0     optional UTF-8 JSON object (metadata, e.g. the peer        opener's new id
                  address), at most 4 KiB; empty means ``{}``
OPEN_OK     1     empty                                                      the opened id
DATA        2     1..64 KiB of stream bytes (empty DATA is tolerated)        open stream
WINDOW      3     u32 big-endian credit increment, > 0                       open stream
FIN         4     empty: the sender will send no more DATA (half-close)      open stream
RST         5     UTF-8 reason, at most 256 bytes: abort both directions     any stream
GOAWAY      6     UTF-8 reason, at most 256 bytes: the session ends          0
==========  ====  =========================================================  ==============

Stream ids. The side that opens a stream picks its id. The WebSocket client uses odd ids
and the server even ids (as in HTTP/2), so both sides can open streams at once without
colliding; each side's ids strictly increase, and id 0 is the session itself. That
ordering lets a receiver tell a frame for a stream that already closed (an id it has
seen: a harmless race with a RST or FIN in flight, ignored) from a frame for a stream
that never existed (an id above any opened: a protocol error).

Stream life. The opener sends OPEN and may send nothing but RST until the peer answers
OPEN_OK (the acceptor dials its target first; data sent before that would have nowhere
to go). After OPEN_OK both sides send DATA/WINDOW freely; each side ends its direction
with FIN, and the stream is gone once FIN went both ways. RST from either side ends it at
once. GOAWAY ends every stream and the session; it is the last frame a side sends.

Flow control. Each direction of each stream has a window, initially 256 KiB
(``INITIAL_WINDOW``; both sides must use the same value, as nothing negotiates it). The
sender subtracts what it sends and may never exceed the window; the receiver returns
credit with WINDOW frames. Credit is granted only when the application calls
``acknowledge(stream_id, n)``, which it does after the bytes were written to the local
socket *and drained* — not when they arrived over the WebSocket. Granting on arrival
would let a fast sender fill the receiver's memory whenever the local reader is slow;
granting after drain means a slow local reader stops the remote sender after at most
one window, so backpressure crosses the tunnel end to end and each stream holds at most
one window of data in user space. Credit is batched (a WINDOW goes out once a quarter
window has been drained) to keep control frames rare; this cannot stall a sender,
because a sender with a zero window has a full window outstanding, all of which will be
drained and acknowledged.

Errors. A peer that breaks the protocol (malformed or oversized frame, unknown type,
DATA beyond its window, a frame for a stream that never existed, an OPEN with the
wrong id parity or a reused id, more concurrent streams than ``max_streams``) is not
negotiated with: ``receive_frame`` queues a GOAWAY naming the error, marks the session
closed and raises ``TunnelProtocolError`` — the only exception peer input can cause.
Every stream counts as reset from then on; later input is ignored. Local calls that
do not fit a stream's state (sending on a stream the peer just reset, say) raise
``StreamStateError``; opening beyond the concurrency limit raises ``StreamLimitError``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, TypeAlias

__all__ = [
    "DEFAULT_MAX_STREAMS",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "MAX_DATA",
    "MAX_META",
    "MAX_REASON",
    "MAX_WINDOW",
    "DataReceived",
    "Event",
    "Frame",
    "FrameType",
    "SessionClosed",
    "StreamAccepted",
    "StreamEnded",
    "StreamLimitError",
    "StreamOpened",
    "StreamReset",
    "StreamStateError",
    "TunnelConnection",
    "TunnelError",
    "TunnelProtocolError",
    "WindowUpdated",
    "decode_frame",
    "encode_frame",
]

HEADER_SIZE: Final = 5
MAX_DATA: Final = 64 * 1024  # largest DATA payload
MAX_META: Final = 4 * 1024  # largest OPEN payload
MAX_REASON: Final = 256  # largest RST / GOAWAY payload
INITIAL_WINDOW: Final = 256 * 1024
MAX_WINDOW: Final = 2**31 - 1  # a window beyond this is a credit overflow (as in HTTP/2)
MAX_STREAM_ID: Final = 2**32 - 1
DEFAULT_MAX_STREAMS: Final = 256

_HEADER: Final = struct.Struct("!BI")
_U32: Final = struct.Struct("!I")


class FrameType(IntEnum):
    OPEN = 0
    OPEN_OK = 1
    DATA = 2
    WINDOW = 3
    FIN = 4
    RST = 5
    GOAWAY = 6


class TunnelError(Exception):
    """Base class of the tunnel's errors."""


class TunnelProtocolError(TunnelError):
    """The peer broke the protocol; the session is closed and a GOAWAY is queued."""


class StreamStateError(TunnelError):
    """A local call does not fit the stream's state (unknown, not accepted, ended, reset).

    Often a race rather than a bug: the peer may reset a stream at any moment, so code
    sending on a stream must expect this.
    """


class StreamLimitError(TunnelError):
    """Opening one more stream would exceed the concurrency limit (or the id space)."""


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    stream_id: int
    payload: bytes = b""


# Payload size limits per type: (smallest, largest).
_PAYLOAD_LIMITS: Final[dict[FrameType, tuple[int, int]]] = {
    FrameType.OPEN: (0, MAX_META),
    FrameType.OPEN_OK: (0, 0),
    FrameType.DATA: (0, MAX_DATA),
    FrameType.WINDOW: (4, 4),
    FrameType.FIN: (0, 0),
    FrameType.RST: (0, MAX_REASON),
    FrameType.GOAWAY: (0, MAX_REASON),
}


def encode_frame(frame_type: FrameType, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame, ready to be sent as one WebSocket binary message."""
    return _HEADER.pack(frame_type, stream_id) + payload


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Parse and validate one frame's framing (not its meaning for any stream).

    Raises ``TunnelProtocolError`` for a truncated frame, an unknown type, a payload of
    the wrong size or a stream id the type does not allow.
    """
    if len(data) < HEADER_SIZE:
        raise TunnelProtocolError(f"truncated frame ({len(data)} bytes)")
    code, stream_id = _HEADER.unpack_from(data)
    try:
        frame_type = FrameType(code)
    except ValueError:
        raise TunnelProtocolError(f"unknown frame type {code}") from None
    size = len(data) - HEADER_SIZE
    smallest, largest = _PAYLOAD_LIMITS[frame_type]
    if not smallest <= size <= largest:
        raise TunnelProtocolError(
            f"{frame_type.name} payload of {size} bytes (allowed {smallest}..{largest})"
        )
    if (stream_id == 0) != (frame_type is FrameType.GOAWAY):
        raise TunnelProtocolError(f"{frame_type.name} on stream {stream_id}")
    return Frame(frame_type, stream_id, bytes(data[HEADER_SIZE:]))


def _truncate_utf8(text: str, limit: int) -> bytes:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return raw
    # Cut on a character boundary so the peer can decode what it gets.
    return raw[:limit].decode("utf-8", "ignore").encode("utf-8")


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream; answer with ``accept`` (after dialing) or ``reset_stream``."""

    stream_id: int
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The peer accepted a stream this side opened; data may flow both ways now."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Stream bytes from the peer; ``acknowledge`` them once written and drained locally."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer sent FIN: no more data will come on this stream."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream was aborted by the peer (or by the session ending)."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """The peer granted credit: ``send_window(stream_id)`` grew."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The peer sent GOAWAY; every stream is gone (each got a ``StreamReset`` first)."""

    reason: str


Event: TypeAlias = (
    StreamOpened
    | StreamAccepted
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | SessionClosed
)

# ----------------------------------------------------------------------------- streams

# Stream states (plain ints: compared on every frame).
_OPENING: Final = 0  # this side sent OPEN, waiting for OPEN_OK
_PENDING: Final = 1  # the peer sent OPEN, waiting for the local accept()
_OPEN: Final = 2  # accepted; data may flow (each direction until its FIN)


class _StreamState:
    """One live stream's state and both directions' flow-control accounting."""

    __slots__ = (
        "local_ended",
        "pending_credit",
        "recv_window",
        "remote_ended",
        "send_window",
        "state",
        "unacked",
    )

    def __init__(self, state: int, window: int) -> None:
        self.state = state
        self.local_ended = False  # this side sent FIN
        self.remote_ended = False  # the peer sent FIN
        self.send_window = window  # bytes this side may still send
        self.recv_window = window  # bytes the peer may still send
        self.unacked = 0  # received, not yet acknowledged by the application
        self.pending_credit = 0  # acknowledged, not yet granted in a WINDOW frame


class TunnelConnection:
    """Both ends of the tunnel protocol for one WebSocket, without I/O.

    ``client`` is True on the WebSocket client (it opens odd stream ids), False on the
    server (even ids). ``max_streams`` bounds the streams the *peer* may have open at
    once (exceeding it is a protocol error) and the streams this side may open
    (``open_stream`` raises ``StreamLimitError``); both sides should use the same value.
    """

    __slots__ = (
        "_closed",
        "_credit_threshold",
        "_initial_window",
        "_last_local_id",
        "_last_peer_id",
        "_local_count",
        "_max_streams",
        "_outbox",
        "_parity",
        "_peer_count",
        "_streams",
        "client",
        "close_reason",
    )

    def __init__(
        self,
        client: bool,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        initial_window: int = INITIAL_WINDOW,
    ) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        if not 1 <= initial_window <= MAX_WINDOW:
            raise ValueError(f"initial_window must be in 1..{MAX_WINDOW}")
        self.client = client
        self._parity = 1 if client else 0  # id % 2 of the streams this side opens
        self._max_streams = max_streams
        self._initial_window = initial_window
        # A WINDOW per quarter window drained keeps control traffic low; see the module
        # docstring for why batching cannot deadlock.
        self._credit_threshold = max(1, initial_window // 4)
        self._streams: dict[int, _StreamState] = {}
        # Highest ids used so far: ids at or below these that are not live belong to
        # closed streams (frames for them are stale, ignored); above, they never existed.
        self._last_local_id = -1 if client else 0
        self._last_peer_id = 0 if client else -1
        self._local_count = 0
        self._peer_count = 0
        self._outbox: list[bytes] = []
        self._closed = False
        self.close_reason: str | None = None

    # ------------------------------------------------------------------ inspection

    @property
    def closed(self) -> bool:
        """True once a GOAWAY was sent or received (or a protocol error happened)."""
        return self._closed

    @property
    def open_streams(self) -> int:
        """Live streams, opened by either side."""
        return len(self._streams)

    def is_live(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def send_window(self, stream_id: int) -> int:
        """Bytes ``send_data`` would accept now (0 if the stream cannot send)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != _OPEN or stream.local_ended:
            return 0
        return stream.send_window

    def receive_window(self, stream_id: int) -> int:
        """Bytes the peer may still send on the stream before it needs more credit."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.recv_window

    def unacknowledged(self, stream_id: int) -> int:
        """Bytes received on the stream that the application has not acknowledged."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.unacked

    def data_to_send(self) -> list[bytes]:
        """Frames queued since the last call, in order; each is one WebSocket message."""
        frames = self._outbox
        self._outbox = []
        return frames

    # ------------------------------------------------------------------ local actions

    def open_stream(self, meta: dict[str, Any] | None = None) -> int:
        """Queue an OPEN for a new stream and return its id.

        ``meta`` must serialize to at most ``MAX_META`` bytes of JSON (``ValueError``).
        """
        if self._closed:
            raise StreamStateError("the session is closed")
        if self._local_count >= self._max_streams:
            raise StreamLimitError(f"{self._max_streams} streams already open")
        stream_id = self._last_local_id + 2
        if stream_id > MAX_STREAM_ID:
            raise StreamLimitError("stream ids exhausted")
        payload = b""
        if meta:
            payload = json.dumps(meta, separators=(",", ":")).encode("utf-8")
            if len(payload) > MAX_META:
                raise ValueError(f"stream metadata is {len(payload)} bytes (max {MAX_META})")
        self._last_local_id = stream_id
        self._streams[stream_id] = _StreamState(_OPENING, self._initial_window)
        self._local_count += 1
        self._outbox.append(encode_frame(FrameType.OPEN, stream_id, payload))
        return stream_id

    def accept(self, stream_id: int) -> None:
        """Accept a stream the peer opened (queue OPEN_OK); data may flow afterwards."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != _PENDING:
            raise StreamStateError(f"stream {stream_id} is not waiting to be accepted")
        stream.state = _OPEN
        self._outbox.append(encode_frame(FrameType.OPEN_OK, stream_id))

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the send window allows; return the bytes taken.

        The rest must be offered again after a ``WindowUpdated`` event for the stream.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != _OPEN or stream.local_ended:
            raise StreamStateError(f"stream {stream_id} cannot send data")
        view = memoryview(data)
        total = min(len(view), stream.send_window)
        for start in range(0, total, MAX_DATA):
            chunk = view[start : min(start + MAX_DATA, total)]
            self._outbox.append(encode_frame(FrameType.DATA, stream_id, bytes(chunk)))
        stream.send_window -= total
        return total

    def end_stream(self, stream_id: int) -> None:
        """Queue a FIN: this side sends no more data on the stream (half-close)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != _OPEN or stream.local_ended:
            raise StreamStateError(f"stream {stream_id} cannot be ended")
        stream.local_ended = True
        self._outbox.append(encode_frame(FrameType.FIN, stream_id))
        if stream.remote_ended:
            self._forget(stream_id)

    def reset_stream(self, stream_id: int, reason: str = "") -> None:
        """Queue a RST aborting both directions. A no-op if the stream is already gone
        (it may have been reset by the peer a moment ago)."""
        if stream_id not in self._streams or self._closed:
            return
        self._forget(stream_id)
        self._outbox.append(
            encode_frame(FrameType.RST, stream_id, _truncate_utf8(reason, MAX_REASON))
        )

    def acknowledge(self, stream_id: int, n: int) -> None:
        """The application handed ``n`` received bytes to its local socket and drained
        them: return that much credit to the peer (batched; see the module docstring).
        A no-op on a stream that is gone."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if not 0 <= n <= stream.unacked:
            raise ValueError(f"acknowledging {n} bytes, {stream.unacked} unacknowledged")
        stream.unacked -= n
        if stream.remote_ended:
            return  # the peer sends nothing more: credit would be useless
        stream.pending_credit += n
        if stream.pending_credit >= self._credit_threshold:
            credit = stream.pending_credit
            stream.pending_credit = 0
            stream.recv_window += credit
            self._outbox.append(encode_frame(FrameType.WINDOW, stream_id, _U32.pack(credit)))

    def close(self, reason: str = "") -> None:
        """End the session: queue GOAWAY and forget every stream. Idempotent."""
        if self._closed:
            return
        self._shut(reason)

    # ------------------------------------------------------------------ peer input

    def receive_frame(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Process one WebSocket message from the peer and return what happened.

        Raises ``TunnelProtocolError`` (after queueing GOAWAY and closing the session) if
        the peer broke the protocol. Once the session is closed, input is ignored.
        """
        if self._closed:
            return []
        try:
            return self._receive(decode_frame(data))
        except TunnelProtocolError as exc:
            self._shut(f"protocol error: {exc}")
            raise

    def _receive(self, frame: Frame) -> list[Event]:
        ftype = frame.type
        sid = frame.stream_id
        if ftype is FrameType.GOAWAY:
            reason = frame.payload.decode("utf-8", "replace")
            events: list[Event] = [
                StreamReset(s, f"session closed: {reason}") for s in self._streams
            ]
            self._streams.clear()
            self._local_count = self._peer_count = 0
            self._closed = True
            self.close_reason = f"peer sent GOAWAY: {reason}"
            events.append(SessionClosed(reason))
            return events
        if ftype is FrameType.OPEN:
            return [self._receive_open(sid, frame.payload)]
        stream = self._streams.get(sid)
        if stream is None:
            local = sid % 2 == self._parity
            last = self._last_local_id if local else self._last_peer_id
            if sid > last:
                raise TunnelProtocolError(f"{ftype.name} for unknown stream {sid}")
            return []  # a stream that already closed: the frame crossed our FIN or RST
        if ftype is FrameType.DATA:
            if stream.state != _OPEN or stream.remote_ended:
                raise TunnelProtocolError(f"DATA on stream {sid} that cannot receive data")
            size = len(frame.payload)
            if size > stream.recv_window:
                raise TunnelProtocolError(
                    f"{size} bytes on stream {sid} beyond its window of {stream.recv_window}"
                )
            if not size:
                return []
            stream.recv_window -= size
            stream.unacked += size
            return [DataReceived(sid, frame.payload)]
        if ftype is FrameType.WINDOW:
            if stream.state != _OPEN:
                raise TunnelProtocolError(f"WINDOW on stream {sid} before it was accepted")
            (increment,) = _U32.unpack(frame.payload)
            if increment == 0:
                raise TunnelProtocolError(f"WINDOW of 0 on stream {sid}")
            if stream.send_window + increment > MAX_WINDOW:
                raise TunnelProtocolError(f"WINDOW overflows stream {sid}'s window")
            stream.send_window += increment
            return [] if stream.local_ended else [WindowUpdated(sid)]
        if ftype is FrameType.FIN:
            if stream.state != _OPEN or stream.remote_ended:
                raise TunnelProtocolError(f"FIN on stream {sid} that cannot end")
            stream.remote_ended = True
            if stream.local_ended:
                self._forget(sid)
            return [StreamEnded(sid)]
        if ftype is FrameType.RST:
            self._forget(sid)
            return [StreamReset(sid, frame.payload.decode("utf-8", "replace"))]
        # OPEN_OK (the only type left).
        if stream.state != _OPENING:
            raise TunnelProtocolError(f"OPEN_OK on stream {sid} that was not opening")
        stream.state = _OPEN
        return [StreamAccepted(sid)]

    def _receive_open(self, sid: int, payload: bytes) -> Event:
        if sid % 2 == self._parity:
            raise TunnelProtocolError(f"peer opened stream {sid} with this side's parity")
        if sid <= self._last_peer_id:
            raise TunnelProtocolError(f"peer reused stream id {sid}")
        if self._peer_count >= self._max_streams:
            raise TunnelProtocolError(f"peer exceeded {self._max_streams} concurrent streams")
        meta: dict[str, Any] = {}
        if payload:
            try:
                decoded = json.loads(payload.decode("utf-8"))
            except (ValueError, RecursionError):  # bad UTF-8/JSON, absurd nesting
                raise TunnelProtocolError(f"OPEN metadata of stream {sid} is not JSON") from None
            if not isinstance(decoded, dict):
                raise TunnelProtocolError(f"OPEN metadata of stream {sid} is not an object")
            meta = decoded
        self._last_peer_id = sid
        self._streams[sid] = _StreamState(_PENDING, self._initial_window)
        self._peer_count += 1
        return StreamOpened(sid, meta)

    # ------------------------------------------------------------------ helpers

    def _forget(self, stream_id: int) -> None:
        del self._streams[stream_id]
        if stream_id % 2 == self._parity:
            self._local_count -= 1
        else:
            self._peer_count -= 1

    def _shut(self, reason: str) -> None:
        self._closed = True
        self.close_reason = reason
        self._streams.clear()
        self._local_count = self._peer_count = 0
        # Frames still queued concern streams that are gone now: GOAWAY supersedes them.
        # The peer learns why the session ends; it is the last frame this side sends.
        self._outbox.clear()
        self._outbox.append(encode_frame(FrameType.GOAWAY, 0, _truncate_utf8(reason, MAX_REASON)))
