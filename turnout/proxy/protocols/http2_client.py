"""Upstream HTTP/2 (h2c) codec for Backends with ``appProtocol: h2c`` / ``grpc``, sans-IO.

It presents the same surface as ``Http1ClientConnection`` (``expect``, ``feed``,
``feed_eof``, ``reusable``, ``done``, a handler receiving ``response_*`` events), so the
exchange, the pool and retries work unchanged. The request side is protocol-neutral:
``send_request(head, client_ip, scheme)`` builds the HEADERS block straight from the
``RequestHead`` (pseudo-headers, the request's headers without the connection-specific
ones, the gateway's X-Forwarded-* and X-Request-Id), ``send_body`` sends unframed body
chunks as DATA within the flow-control windows and ``send_end`` ends the stream.
Only a request mirror still writes HTTP/1.1 bytes (``send``): those are parsed back with
llhttp (httptools) and re-sent as frames.

One request at a time per connection, like an HTTP/1.1 connection in the pool: streams
are not multiplexed yet (a long gRPC stream holds its connection). Response trailers
(``grpc-status``, ``grpc-message``) are passed to ``response_complete``; a stream reset
by the upstream is a protocol error of that request; GOAWAY makes the connection
unusable for the next one.
"""

from __future__ import annotations

from typing import Any, Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import httptools

from turnout.core.headers import H2_REQUEST_DROPPED
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.hpack_codec import Decoder, Encoder
from turnout.proxy.protocols.http1_client import RESPONSE_HOP_BY_HOP, ClientEvents, forwarded_for

# Connection-specific request headers HTTP/2 forbids (RFC 9113 §8.2.2); ``te`` is
# allowed only as "trailers" and handled apart.
_DROP: Final = H2_REQUEST_DROPPED
# Request body bytes buffered for lack of flow-control window before the exchange is
# asked to stop sending (it pauses the client).
SEND_BUFFER_LIMIT: Final = 256 * 1024
WINDOW: Final = 4 * 1024 * 1024  # our receive window per stream and for the connection


class Http2ClientConnection:
    __slots__ = (
        "_done_sending",
        "_ended",
        "_h2",
        "_head_request",
        "_headers",
        "_method",
        "_parser",
        "_pending",
        "_pending_size",
        "_status",
        "_stream",
        "_trailers",
        "_url",
        "done",
        "handler",
        "received_any",
        "reusable",
        "writable",
    )

    def __init__(self, handler: ClientEvents) -> None:
        self.handler: ClientEvents = handler
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=True
        )
        self._h2 = h2.connection.H2Connection(config=config)
        # The compiled HPACK contexts (hpack_codec: same interface, several times faster).
        self._h2.encoder = Encoder()  # type: ignore[assignment]
        self._h2.decoder = Decoder(self._h2.DEFAULT_MAX_HEADER_LIST_SIZE)  # type: ignore[assignment]
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(WINDOW - 65535)
        self.reusable = True
        self.done = True
        self.received_any = False
        self.writable = True  # False while request bytes wait for flow-control window
        self._stream = 0
        self._parser: Any = None
        self._method = b""
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._done_sending = False
        self._ended = False
        self._head_request = False
        self._status = 0
        self._trailers: Headers | None = None

    # -- request side -----------------------------------------------------------------

    def expect(self, head_request: bool) -> None:
        """A new request is about to be written."""
        self._head_request = head_request
        self.done = False
        self.received_any = False
        self._stream = self._h2.get_next_available_stream_id()
        self._parser = None  # made by ``send`` only (HTTP/1.1 bytes from a mirror)
        self._headers = []
        self._pending = []
        self._pending_size = 0
        self._done_sending = False
        self._ended = False
        self._status = 0
        self._trailers = None

    def send_request(self, head: RequestHead, client_ip: bytes, scheme: bytes) -> None:
        """HEADERS for ``head`` (the body follows with ``send_body``/``send_end``)."""
        out: list[tuple[bytes, bytes]] = [
            (b":method", head.method),
            (b":scheme", b"http"),
            (b":authority", head.authority),
            (b":path", (head.path + b"?" + head.query if head.query else head.path) or b"/"),
        ]
        for name, value in head.headers:
            if name == b"te":
                if value.strip().lower() == b"trailers":
                    out.append((b"te", b"trailers"))
            elif name not in _DROP:
                out.append((name, value))
        out.append((b"x-forwarded-for", forwarded_for(head, client_ip)))
        out.append((b"x-forwarded-proto", scheme))
        out.append((b"x-forwarded-host", head.original_authority))
        out.append((b"x-request-id", head.request_id))
        if head.content_length is not None and not head.chunked:
            out.append((b"content-length", b"%d" % head.content_length))
        self._h2.send_headers(self._stream, out)

    def send_body(self, data: bytes) -> None:
        """A chunk of the request body (unframed)."""
        if data:
            self.on_body(data)

    def send_end(self) -> None:
        """The request body is complete: END_STREAM once the pending data is out."""
        self.on_message_complete()

    def send(self, data: bytes) -> None:
        """HTTP/1.1 request bytes (a mirror's: head, body, chunk framing)."""
        if self.done:
            return
        if self._parser is None:
            self._parser = httptools.HttpRequestParser(self)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"cannot translate the request to HTTP/2: {exc}")

    # httptools request-parser callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        method = parser.get_method()
        authority = b""
        out: list[tuple[bytes, bytes]] = []
        for name, value in self._headers:
            if name == b"host":
                authority = value
            elif name == b"te":
                if value.strip().lower() == b"trailers":
                    out.append((b"te", b"trailers"))
            elif name not in _DROP:
                out.append((name, value))
        url = self._url or b"/"
        self._url = b""
        head = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":authority", authority),
            (b":path", url),
        ]
        self._h2.send_headers(self._stream, head + out)

    def on_body(self, body: bytes) -> None:
        self._pending.append(body)
        self._pending_size += len(body)
        self._pump()

    def on_message_complete(self) -> None:
        self._done_sending = True
        self._pump()

    def _pump(self) -> None:
        """Send what the flow-control windows allow; keep the rest for WINDOW_UPDATE."""
        if self.done or self._ended:
            # The response already ended (an early answer): the rest is not wanted.
            self._pending.clear()
            self._pending_size = 0
            self.writable = True
            return
        h2c = self._h2
        sid = self._stream
        pending = self._pending
        while pending:
            window = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size)
            if window <= 0:
                break
            chunk = pending[0]
            if len(chunk) <= window:
                pending.pop(0)
                h2c.send_data(sid, chunk)
                self._pending_size -= len(chunk)
            else:
                h2c.send_data(sid, chunk[:window])
                pending[0] = chunk[window:]
                self._pending_size -= window
        if not pending and self._done_sending and not self._ended:
            self._ended = True  # END_STREAM sent: nothing more for this stream
            h2c.end_stream(sid)
        writable = self._pending_size < SEND_BUFFER_LIMIT
        if writable != self.writable:
            self.writable = writable

    def data_to_send(self) -> bytes:
        data: bytes = self._h2.data_to_send()
        return data

    # -- response side ----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail(f"HTTP/2 protocol error from the upstream: {exc}")
            return
        for event in events:
            self._event(event)

    def _event(self, event: h2.events.Event) -> None:
        sid = self._stream
        if isinstance(event, h2.events.ResponseReceived):
            if event.stream_id != sid or self.done:
                return
            self.received_any = True
            status, headers, length = _response(event.headers)
            self._status = status
            head = ResponseHead(status, headers)
            head.content_length = length  # h2 validated it against the DATA it carries
            head.chunked = length is None
            if 100 <= status < 200:
                self.handler.response_informational(head)
                return
            self.handler.response_head(head)
        elif isinstance(event, h2.events.InformationalResponseReceived):
            if event.stream_id == sid and not self.done:
                status, headers, _ = _response(event.headers)
                if status != 100:  # the gateway answers Expect itself
                    self.handler.response_informational(ResponseHead(status, headers))
        elif isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length:
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.stream_id == sid and not self.done and event.data and not self._head_request:
                self.handler.response_body(event.data)
        elif isinstance(event, h2.events.TrailersReceived):
            if event.stream_id == sid:
                self._trailers = [
                    (n.lower(), v) for n, v in event.headers if not n.startswith(b":")
                ]
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id == sid and not self.done:
                self.done = True
                self.handler.response_complete(self._trailers)
        elif isinstance(event, h2.events.StreamReset):
            if event.stream_id == sid and not self.done:
                code = h2.errors.ErrorCodes(event.error_code).name
                self._fail(f"the upstream reset the stream ({code})", keep=True)
        elif isinstance(event, h2.events.WindowUpdated):
            if self._pending or (self._done_sending and not self._ended):
                self._pump()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.reusable = False
            if not self.done and (event.last_stream_id is None or event.last_stream_id < sid):
                self._fail("the upstream closed the HTTP/2 connection (GOAWAY)")

    def cancel(self) -> bytes:
        """RST_STREAM(CANCEL) for the request in flight, if any; the bytes to send."""
        if self.done or not self._stream:
            return b""
        self.done = True
        try:
            self._h2.reset_stream(self._stream, h2.errors.ErrorCodes.CANCEL)
        except h2.exceptions.H2Error:
            return b""
        return self.data_to_send()

    def feed_eof(self) -> None:
        self.reusable = False
        if not self.done and self._stream:
            self._fail("the upstream closed the connection")

    def _fail(self, message: str, keep: bool = False) -> None:
        if not keep:
            self.reusable = False
        was_done = self.done
        self.done = True
        if not was_done:
            self.handler.protocol_error(message)


def _response(raw: Any) -> tuple[int, Headers, int | None]:
    status = 0
    length: int | None = None
    headers: Headers = []
    for name, value in raw:
        if name == b":status":
            status = int(value)
        elif name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif not name.startswith(b":") and name not in RESPONSE_HOP_BY_HOP:
            headers.append((name, value))
    return status, headers, length
