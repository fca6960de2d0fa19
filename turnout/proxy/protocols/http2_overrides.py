"""``h2``'s server connection with stream-level handling of what it treats as connection
errors (the HTTP/2 server codec's one subclass of ``h2``; see ``protocols/http2.py``).

``h2`` ends the whole connection for a malformed request, a content-length mismatch or a
stream beyond ``MAX_CONCURRENT_STREAMS``; RFC 9113 makes the first two stream errors, and
refusing one excess stream is kinder than dropping all the others. ``ServerH2Connection``
narrows each to the one stream by overriding private hooks of ``h2``, so it depends on
``h2``'s internals: ``H2_PRIVATE_NAMES`` lists every private name used here, the
``h2`` pin in ``pyproject.toml`` is the range that has them, and a unit test fails with
a clear message if the installed ``h2`` lacks one.
"""

from __future__ import annotations

from typing import Final, cast

from h2.config import H2Configuration
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import Event, RequestReceived, TrailersReceived
from h2.exceptions import (
    DenialOfServiceError,
    InvalidBodyLengthError,
    ProtocolError,
    StreamClosedError,
)
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

from turnout.proxy.protocols.hpack_codec import Decoder, Encoder
from turnout.proxy.protocols.http2_fields import request_fields, trailer_fields

# How many closed streams h2 remembers (to tell a late frame on a reset stream, a stream
# error, from a frame on a stream that never existed). h2's default, 65536, costs several
# MiB per long-lived connection; the last thousand cover any frame still in flight.
CLOSED_STREAMS_REMEMBERED: Final = 1000
# Control frames counted against MAX_QUEUED_CONTROL_FRAMES (``http2_flood``).
CONTROL_FRAMES: Final = frozenset({PingFrame, SettingsFrame, RstStreamFrame, GoAwayFrame})
HIGHEST_STREAM_ID: Final = (1 << 31) - 1

# (owner, private name) for every private attribute of h2 used or overridden here and in
# the codec: what the h2 pin in pyproject.toml guarantees (tests/unit: checked).
H2_PRIVATE_NAMES: Final = (
    (H2Connection, "_prepare_for_sending"),  # overridden
    (H2Connection, "_get_or_create_stream"),  # overridden
    (H2Connection, "_receive_headers_frame"),  # overridden
    (H2Connection, "_receive_data_frame"),  # overridden
    (H2Connection, "_closed_streams"),  # an instance attribute
    (H2Connection, "MAX_CLOSED_STREAMS"),
    (ConnectionInputs, "RECV_HEADERS"),
    (StreamClosedBy, "SEND_RST_STREAM"),
    (H2Stream, "closed_by"),
)


class CompressionError(ProtocolError):
    """A header block HPACK cannot decode: GOAWAY(COMPRESSION_ERROR), RFC 9113 §4.3."""

    error_code = ErrorCodes.COMPRESSION_ERROR


class StreamRejected(Event):
    """Not an ``h2`` event: ``ServerH2Connection`` reset or refused a stream itself."""

    def __init__(self, stream_id: int, new: bool, counted: bool, message: str) -> None:
        self.stream_id = stream_id
        self.new = new  # the stream was opened by this HEADERS frame
        self.counted = counted  # counts against the reset budget
        self.message = message


class ServerH2Connection(H2Connection):
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
        # The compiled HPACK contexts (hpack_codec: same interface, several times faster).
        self.encoder = Encoder()  # type: ignore[assignment]
        self.decoder = Decoder(self.DEFAULT_MAX_HEADER_LIST_SIZE)  # type: ignore[assignment]
        self.control_frames = 0  # control frames queued since the connection began
        self.refuse_above = HIGHEST_STREAM_ID  # set by a graceful GOAWAY
        self._header_stream = 0  # the stream a HEADERS block reached, while decoding it

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        for frame in frames:
            if type(frame) in CONTROL_FRAMES:
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
            frames, events = super()._receive_headers_frame(frame)
            # h2's own inbound validation is off (slow): the same checks, compiled.
            for ev in events:
                kind = type(ev)
                if kind is RequestReceived:
                    req = cast(RequestReceived, ev)
                    req.headers = request_fields(req.headers)
                elif kind is TrailersReceived:
                    tr = cast(TrailersReceived, ev)
                    tr.headers = trailer_fields(tr.headers)
            return frames, events
        except StreamClosedError:
            raise  # h2 handles frames on closed streams itself
        except ProtocolError as exc:
            if isinstance(exc.__cause__, HPACKError) and not isinstance(exc, DenialOfServiceError):
                # h2 says PROTOCOL_ERROR; RFC 9113 §4.3 asks for COMPRESSION_ERROR
                raise CompressionError(str(exc)) from exc
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
            raise CompressionError(f"Error decoding header block: {exc}") from exc
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
        if self.state_machine.state == ConnectionState.CLOSED:
            # A GOAWAY in the same read as this stream's frames closed the connection
            # before its events were handled: nothing can be sent any more.
            return
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
