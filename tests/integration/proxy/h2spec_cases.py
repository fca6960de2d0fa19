"""h2spec's HTTP/2 conformance cases, re-expressed in Python over a raw frame socket.

h2spec (the usual HTTP/2 conformance tool) is not packaged for Debian, PyPI or npm, so
its cases (RFC 7540/9113 sections 3.5 to 8.2 and RFC 7541's HPACK section) are written
here against a socket: each case sends bytes a peer could send and checks the answer
with h2spec's own verdicts. A *connection error* passes when GOAWAY carries the expected
code or the server closes the connection; a *stream error* passes when RST_STREAM or
GOAWAY carries the expected code or the connection closes; an ignored frame passes when
the connection still answers a PING. ``CASES`` maps an h2spec-style id to its check;
``tests/integration/proxy/test_h2spec.py`` runs them against h2c and TLS (ALPN h2)
listeners and docs/http2.md records the pass count.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from hpack import Encoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = 0, 1, 2, 3, 4, 5, 6, 7
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 5, 6, 7, 9
TIMEOUT = 5.0


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", sid)
        + payload
    )


@dataclass
class Frame:
    kind: int
    flags: int
    sid: int
    payload: bytes


class Conn:
    """One client connection: preface and SETTINGS exchanged, then raw frames."""

    def __init__(self, port: int, tls: ssl.SSLContext | None, settings: bytes = b"") -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock: socket.socket = (
            tls.wrap_socket(raw, server_hostname="h2spec.test") if tls is not None else raw
        )
        self.buf = b""
        self.enc = Encoder()
        self.closed = False
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))
        self.server_settings = b""
        # The server's SETTINGS, and its ACK of ours.
        acked = got = False
        while not (acked and got):
            f = self.read()
            if f is None:
                raise AssertionError("connection closed during the handshake")
            if f.kind == SETTINGS and f.flags & ACK:
                acked = True
            elif f.kind == SETTINGS:
                got = True
                self.server_settings = f.payload
                self.send(frame(SETTINGS, ACK, 0))

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def read(self, timeout: float = TIMEOUT) -> Frame | None:
        """The next frame; None once the connection is closed (or times out)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    head, payload = self.buf[:9], self.buf[9 : 9 + length]
                    self.buf = self.buf[9 + length :]
                    sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                    return Frame(head[3], head[4], sid, payload)
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except (OSError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk

    def headers(self, sid: int, fields: list[tuple[bytes, bytes]], flags: int) -> bytes:
        return frame(HEADERS, flags, sid, self.enc.encode(fields))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def request(path: bytes = b"/echo/", method: bytes = b"GET") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":authority", b"h2spec.test"),
        (b":path", path),
    ]


# How the last error case passed: "code" (the expected error code was sent) or "closed"
# (the connection was closed without it, which h2spec accepts too).
LAST: list[str] = []


def connection_error(c: Conn, code: int) -> bool:
    while True:
        f = c.read()
        if f is None:
            LAST.append("closed")
            return c.closed  # closed: accepted (h2spec); a timeout is a failure
        if f.kind == GOAWAY and int.from_bytes(f.payload[4:8], "big") == code:
            LAST.append("code")
            return True


def stream_error(c: Conn, code: int) -> bool:
    while True:
        f = c.read()
        if f is None:
            LAST.append("closed")
            return c.closed
        if f.kind == RST_STREAM and int.from_bytes(f.payload[:4], "big") == code:
            LAST.append("code")
            return True
        if f.kind == GOAWAY and int.from_bytes(f.payload[4:8], "big") == code:
            LAST.append("code")
            return True


def still_alive(c: Conn) -> bool:
    c.send(frame(PING, 0, 0, b"h2specOK"))
    while True:
        f = c.read()
        if f is None:
            return False
        if f.kind == PING and f.flags & ACK and f.payload == b"h2specOK":
            return True
        if f.kind == GOAWAY:
            return False


def response(c: Conn, sid: int) -> int:
    """The :status of ``sid``'s response (0 if none came), reading to its end."""
    status = 0
    while True:
        f = c.read()
        if f is None:
            return status
        if f.sid != sid:
            continue
        if f.kind == HEADERS and not status:
            # ":status 200" is static index 8 (0x88); any other status counts as 1
            status = 200 if f.payload[:1] == b"\x88" else 1
        if f.kind == RST_STREAM:
            return status
        if f.flags & END_STREAM and f.kind in (DATA, HEADERS):
            return status


Case = Callable[[Conn], bool]


def _ok_request(c: Conn) -> bool:
    c.send(c.headers(1, request(), END_STREAM | END_HEADERS))
    return response(c, 1) == 200


def _unknown_frame_ignored(c: Conn) -> bool:
    c.send(frame(0xFF, 0, 0, b"junk"))
    return still_alive(c)


def _unknown_flags_ignored(c: Conn) -> bool:
    c.send(frame(PING, 0x16, 0, b"\x00" * 8))
    f = c.read()
    return f is not None and f.kind == PING and bool(f.flags & ACK)


def _reserved_bit_ignored(c: Conn) -> bool:
    # a PING whose stream-id field has the reserved high bit set: still stream 0
    c.send(struct.pack(">I", 8)[1:] + bytes((PING, 0)) + b"\x80\x00\x00\x00" + b"\x01" * 8)
    f = c.read()
    return f is not None and f.kind == PING and bool(f.flags & ACK)


def _data_too_large(c: Conn) -> bool:
    c.send(c.headers(1, request(method=b"POST"), END_HEADERS))
    c.send(frame(DATA, END_STREAM, 1, b"x" * 16385))
    return connection_error(c, FRAME_SIZE_ERROR) or stream_error(c, FRAME_SIZE_ERROR)


def _headers_too_large(c: Conn) -> bool:
    fields = [
        *request(),
        (b"x-big", b"a" * 8000),
        (b"x-big2", b"b" * 8000),
        (b"x-big3", b"c" * 8000),
    ]
    block = Encoder().encode(fields, huffman=False)
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block[:16385].ljust(16385, b"\x00")))
    return connection_error(c, FRAME_SIZE_ERROR)


def _bad_header_block(c: Conn) -> bool:
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\xff\xff\xff\xff\xff"))
    return connection_error(c, COMPRESSION_ERROR)


def _priority_inside_header_block(c: Conn) -> bool:
    block = c.enc.encode(request())
    c.send(frame(HEADERS, END_STREAM, 1, block))
    c.send(frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00\x10"))
    return connection_error(c, PROTOCOL_ERROR)


def _on_idle(kind: int, payload: bytes) -> Case:
    def case(c: Conn) -> bool:
        c.send(frame(kind, 0, 1, payload))
        return connection_error(c, PROTOCOL_ERROR)

    return case


def _data_half_closed(c: Conn) -> bool:
    c.send(c.headers(1, request(), END_STREAM | END_HEADERS))
    c.send(frame(DATA, 0, 1, b"test"))
    return stream_error(c, STREAM_CLOSED)


def _headers_half_closed(c: Conn) -> bool:
    c.send(c.headers(1, request(), END_STREAM | END_HEADERS))
    c.send(c.headers(1, request(), END_HEADERS))
    return stream_error(c, STREAM_CLOSED)


def _data_closed(c: Conn) -> bool:
    c.send(c.headers(1, request(), END_STREAM | END_HEADERS))
    response(c, 1)
    c.send(frame(DATA, END_STREAM, 1, b"test"))
    return stream_error(c, STREAM_CLOSED)


def _headers_closed(c: Conn) -> bool:
    c.send(c.headers(1, request(), END_STREAM | END_HEADERS))
    response(c, 1)
    c.send(c.headers(1, request(), END_STREAM | END_HEADERS))
    return connection_error(c, STREAM_CLOSED)


def _even_stream(c: Conn) -> bool:
    c.send(c.headers(2, request(), END_STREAM | END_HEADERS))
    return connection_error(c, PROTOCOL_ERROR)


def _lower_stream(c: Conn) -> bool:
    c.send(c.headers(5, request(), END_STREAM | END_HEADERS))
    c.send(c.headers(3, request(), END_STREAM | END_HEADERS))
    return connection_error(c, PROTOCOL_ERROR)


def _too_many_streams(c: Conn) -> bool:
    limit = 100
    payload = c.server_settings
    for i in range(0, len(payload) - 5, 6):
        if int.from_bytes(payload[i : i + 2], "big") == 3:
            limit = int.from_bytes(payload[i + 2 : i + 6], "big")
    out = b""
    for n in range(limit + 1):
        out += c.headers(1 + 2 * n, request(method=b"POST"), END_HEADERS)  # left open
    c.send(out)
    return stream_error(c, REFUSED_STREAM) or stream_error(c, PROTOCOL_ERROR)


def _self_dependent_headers(c: Conn) -> bool:
    block = c.enc.encode(request())
    c.send(
        frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1, b"\x00\x00\x00\x01\x10" + block)
    )
    return stream_error(c, PROTOCOL_ERROR)


def _self_dependent_priority(c: Conn) -> bool:
    c.send(frame(PRIORITY, 0, 1, b"\x00\x00\x00\x01\x10"))
    return stream_error(c, PROTOCOL_ERROR)


def _unknown_frame_in_header_block(c: Conn) -> bool:
    c.send(frame(HEADERS, END_STREAM, 1, c.enc.encode(request())))
    c.send(frame(0xFF, 0, 1, b"junk"))
    return connection_error(c, PROTOCOL_ERROR)


def _zero_stream(kind: int, payload: bytes, flags: int = 0, code: int = PROTOCOL_ERROR) -> Case:
    def case(c: Conn) -> bool:
        c.send(frame(kind, flags, 0, payload))
        return connection_error(c, code)

    return case


def _data_bad_padding(c: Conn) -> bool:
    c.send(c.headers(1, request(method=b"POST"), END_HEADERS))
    c.send(frame(DATA, END_STREAM | PADDED, 1, b"\x06test"))
    return connection_error(c, PROTOCOL_ERROR)


def _headers_bad_padding(c: Conn) -> bool:
    block = c.enc.encode(request())
    c.send(frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, bytes((len(block) + 1,)) + block))
    return connection_error(c, PROTOCOL_ERROR)


def _padded_data_ok(c: Conn) -> bool:
    c.send(c.headers(1, request(b"/echo/", b"POST"), END_HEADERS))
    c.send(frame(DATA, END_STREAM | PADDED, 1, b"\x04test\x00\x00\x00\x00"))
    return response(c, 1) == 200


def _priority_bad_length(c: Conn) -> bool:
    c.send(frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00"))
    return stream_error(c, FRAME_SIZE_ERROR)


def _rst_bad_length(c: Conn) -> bool:
    c.send(c.headers(1, request(method=b"POST"), END_HEADERS))
    c.send(frame(RST_STREAM, 0, 1, b"\x00\x00\x00"))
    return connection_error(c, FRAME_SIZE_ERROR)


def _settings_ack_with_payload(c: Conn) -> bool:
    c.send(frame(SETTINGS, ACK, 0, b"\x00\x01\x00\x00\x10\x00"))
    return connection_error(c, FRAME_SIZE_ERROR)


def _settings_on_stream(c: Conn) -> bool:
    c.send(frame(SETTINGS, 0, 1, b"\x00\x01\x00\x00\x10\x00"))
    return connection_error(c, PROTOCOL_ERROR)


def _settings_bad_length(c: Conn) -> bool:
    c.send(frame(SETTINGS, 0, 0, b"\x00\x01\x00\x00\x10"))
    return connection_error(c, FRAME_SIZE_ERROR)


def _setting(ident: int, value: int, code: int) -> Case:
    def case(c: Conn) -> bool:
        c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", ident, value)))
        return connection_error(c, code)

    return case


def _unknown_setting_ignored(c: Conn) -> bool:
    c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 0xFF, 1)))
    while True:
        f = c.read()
        if f is None or f.kind == GOAWAY:
            return False
        if f.kind == SETTINGS and f.flags & ACK:
            return True


def _settings_acked(c: Conn) -> bool:
    c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 100000)))
    while True:
        f = c.read()
        if f is None or f.kind == GOAWAY:
            return False
        if f.kind == SETTINGS and f.flags & ACK:
            return not f.payload


def _ping_echo(c: Conn) -> bool:
    c.send(frame(PING, 0, 0, b"h2spec\x00\x01"))
    f = c.read()
    return (
        f is not None and f.kind == PING and f.flags & ACK == ACK and f.payload == b"h2spec\x00\x01"
    )


def _ping_ack_not_answered(c: Conn) -> bool:
    c.send(frame(PING, ACK, 0, b"unsolic"[:7] + b"d"))
    c.send(frame(PING, 0, 0, b"expected"))
    f = c.read()
    return f is not None and f.kind == PING and f.payload == b"expected"


def _window_zero_connection(c: Conn) -> bool:
    c.send(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"))
    return connection_error(c, PROTOCOL_ERROR)


def _window_zero_stream(c: Conn) -> bool:
    c.send(c.headers(1, request(method=b"POST"), END_HEADERS))
    c.send(frame(WINDOW_UPDATE, 0, 1, b"\x00\x00\x00\x00"))
    return stream_error(c, PROTOCOL_ERROR)


def _window_bad_length(c: Conn) -> bool:
    c.send(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))
    return connection_error(c, FRAME_SIZE_ERROR)


def _window_overflow_connection(c: Conn) -> bool:
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)))
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)))
    return connection_error(c, FLOW_CONTROL_ERROR)


def _window_overflow_stream(c: Conn) -> bool:
    c.send(c.headers(1, request(method=b"POST"), END_HEADERS))
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF)))
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF)))
    return stream_error(c, FLOW_CONTROL_ERROR)


def _initial_window_overflow(c: Conn) -> bool:
    c.send(c.headers(1, request(method=b"POST"), END_HEADERS))
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF - 65535)))
    c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0x7FFFFFFF)))
    return stream_error(c, FLOW_CONTROL_ERROR) or connection_error(c, FLOW_CONTROL_ERROR)


def _continuation_after_end_headers(c: Conn) -> bool:
    c.send(c.headers(1, request(), END_STREAM | END_HEADERS))
    c.send(frame(CONTINUATION, END_HEADERS, 1, c.enc.encode([(b"x-a", b"1")])))
    return connection_error(c, PROTOCOL_ERROR)


def _continuation_other_stream(c: Conn) -> bool:
    c.send(frame(HEADERS, END_STREAM, 1, c.enc.encode(request())))
    c.send(frame(CONTINUATION, END_HEADERS, 3, c.enc.encode([(b"x-a", b"1")])))
    return connection_error(c, PROTOCOL_ERROR)


def _data_between_headers_and_continuation(c: Conn) -> bool:
    c.send(frame(HEADERS, 0, 1, c.enc.encode(request(method=b"POST"))))
    c.send(frame(DATA, END_STREAM, 1, b"test"))
    return connection_error(c, PROTOCOL_ERROR)


def _continuations_ok(c: Conn) -> bool:
    block = c.enc.encode([*request(), (b"x-a", b"a" * 100), (b"x-b", b"b" * 100)])
    c.send(frame(HEADERS, END_STREAM, 1, block[:10]))
    c.send(frame(CONTINUATION, 0, 1, block[10:50]))
    c.send(frame(CONTINUATION, END_HEADERS, 1, block[50:]))
    return response(c, 1) == 200


def _trailers_without_end_stream(c: Conn) -> bool:
    c.send(c.headers(1, request(method=b"POST"), END_HEADERS))
    c.send(frame(DATA, 0, 1, b"test"))
    c.send(c.headers(1, [(b"x-trailer", b"1")], END_HEADERS))
    return stream_error(c, PROTOCOL_ERROR)


def _malformed(fields: list[tuple[bytes, bytes]]) -> Case:
    def case(c: Conn) -> bool:
        c.send(c.headers(1, fields, END_STREAM | END_HEADERS))
        return stream_error(c, PROTOCOL_ERROR)

    return case


def _pseudo_in_trailers(c: Conn) -> bool:
    c.send(c.headers(1, request(method=b"POST"), END_HEADERS))
    c.send(frame(DATA, 0, 1, b"test"))
    c.send(c.headers(1, [(b":method", b"POST")], END_STREAM | END_HEADERS))
    return stream_error(c, PROTOCOL_ERROR)


def _content_length_mismatch(c: Conn) -> bool:
    c.send(c.headers(1, [*request(method=b"POST"), (b"content-length", b"1")], END_HEADERS))
    c.send(frame(DATA, END_STREAM, 1, b"test"))
    return stream_error(c, PROTOCOL_ERROR)


def _content_length_mismatch_multi(c: Conn) -> bool:
    c.send(c.headers(1, [*request(method=b"POST"), (b"content-length", b"1")], END_HEADERS))
    c.send(frame(DATA, 0, 1, b"t"))
    c.send(frame(DATA, END_STREAM, 1, b"est"))
    return stream_error(c, PROTOCOL_ERROR)


def _push_promise_from_client(c: Conn) -> bool:
    c.send(c.headers(1, request(method=b"POST"), END_HEADERS))
    c.send(frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02" + c.enc.encode(request())))
    return connection_error(c, PROTOCOL_ERROR)


def _hpack(block: bytes) -> Case:
    def case(c: Conn) -> bool:
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
        return connection_error(c, COMPRESSION_ERROR)

    return case


def _hpack_size_update_ok(c: Conn) -> bool:
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x20" + Encoder().encode(request())))
    return response(c, 1) == 200


def _bad_preface(port: int, tls: ssl.SSLContext | None) -> bool:
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock = tls.wrap_socket(raw, server_hostname="h2spec.test") if tls is not None else raw
    try:
        sock.sendall(b"INVALID CONNECTION PREFACE\r\n\r\n")
        deadline = time.monotonic() + TIMEOUT
        data = b""
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (OSError, ssl.SSLError):
                return True
            if not chunk:
                return True  # closed
            data += chunk
            # h2c: a plain listener answers junk as HTTP/1.1 (400) and closes; GOAWAY
            # after a bad preface also passes
            if b"HTTP/1.1 400" in data or (len(data) > 9 and data[3] == GOAWAY):
                return True
        return False
    finally:
        sock.close()


def _ping_on_stream(c: Conn) -> bool:
    c.send(frame(PING, 0, 1, b"\x00" * 8))
    return connection_error(c, PROTOCOL_ERROR)


def _goaway_on_stream(c: Conn) -> bool:
    c.send(frame(GOAWAY, 0, 1, b"\x00\x00\x00\x00\x00\x00\x00\x00"))
    return connection_error(c, PROTOCOL_ERROR)


CASES: dict[str, Case] = {
    "generic/1 GET request": _ok_request,
    "4.1/1 unknown frame type is ignored": _unknown_frame_ignored,
    "4.1/2 undefined flags are ignored": _unknown_flags_ignored,
    "4.1/3 reserved stream-id bit is ignored": _reserved_bit_ignored,
    "4.2/1 DATA larger than SETTINGS_MAX_FRAME_SIZE": _data_too_large,
    "4.2/2 HEADERS larger than SETTINGS_MAX_FRAME_SIZE": _headers_too_large,
    "4.3/1 invalid header block fragment": _bad_header_block,
    "4.3/2 PRIORITY inside a header block": _priority_inside_header_block,
    "5.1/1 DATA on an idle stream": _on_idle(DATA, b"test"),
    "5.1/2 RST_STREAM on an idle stream": _on_idle(RST_STREAM, b"\x00\x00\x00\x08"),
    "5.1/3 WINDOW_UPDATE on an idle stream": _on_idle(WINDOW_UPDATE, b"\x00\x00\x00\x01"),
    "5.1/4 CONTINUATION on an idle stream": _on_idle(CONTINUATION, b"\x82"),
    "5.1/5 DATA on a half-closed (remote) stream": _data_half_closed,
    "5.1/6 HEADERS on a half-closed (remote) stream": _headers_half_closed,
    "5.1/7 DATA on a closed stream": _data_closed,
    "5.1/8 HEADERS on a closed stream": _headers_closed,
    "5.1.1/1 even-numbered stream from a client": _even_stream,
    "5.1.1/2 stream id lower than a previous one": _lower_stream,
    "5.1.2/1 more streams than SETTINGS_MAX_CONCURRENT_STREAMS": _too_many_streams,
    "5.3.1/1 HEADERS depending on its own stream": _self_dependent_headers,
    "5.3.1/2 PRIORITY depending on its own stream": _self_dependent_priority,
    "5.5/1 unknown frame inside a header block": _unknown_frame_in_header_block,
    "6.1/1 DATA on stream 0": _zero_stream(DATA, b"test"),
    "6.1/2 DATA with too much padding": _data_bad_padding,
    "6.1/3 DATA with padding is accepted": _padded_data_ok,
    "6.2/1 HEADERS on stream 0": _zero_stream(HEADERS, b"\x82", END_STREAM | END_HEADERS),
    "6.2/2 HEADERS with too much padding": _headers_bad_padding,
    "6.3/1 PRIORITY on stream 0": _zero_stream(PRIORITY, b"\x00\x00\x00\x01\x10"),
    "6.3/2 PRIORITY of length 4": _priority_bad_length,
    "6.4/1 RST_STREAM on stream 0": _zero_stream(RST_STREAM, b"\x00\x00\x00\x08"),
    "6.4/2 RST_STREAM of length 3": _rst_bad_length,
    "6.5/1 SETTINGS ACK with a payload": _settings_ack_with_payload,
    "6.5/2 SETTINGS on a stream": _settings_on_stream,
    "6.5/3 SETTINGS of length 5": _settings_bad_length,
    "6.5.2/1 SETTINGS_ENABLE_PUSH of 2": _setting(2, 2, PROTOCOL_ERROR),
    "6.5.2/2 SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1": _setting(
        4, 0x80000000, FLOW_CONTROL_ERROR
    ),
    "6.5.2/3 SETTINGS_MAX_FRAME_SIZE below 16384": _setting(5, 16383, PROTOCOL_ERROR),
    "6.5.2/4 SETTINGS_MAX_FRAME_SIZE above 2^24-1": _setting(5, 0x1000000, PROTOCOL_ERROR),
    "6.5.2/5 unknown setting is ignored": _unknown_setting_ignored,
    "6.5.3/1 SETTINGS is acknowledged, without a payload": _settings_acked,
    "6.7/1 PING is answered with the same payload": _ping_echo,
    "6.7/2 PING with ACK is not answered": _ping_ack_not_answered,
    "6.7/3 PING on a stream": _ping_on_stream,
    "6.7/4 PING of length 7": _zero_stream(PING, b"\x00" * 7, code=FRAME_SIZE_ERROR),
    "6.8/1 GOAWAY on a stream": _goaway_on_stream,
    "6.9/1 WINDOW_UPDATE of 0 on the connection": _window_zero_connection,
    "6.9/2 WINDOW_UPDATE of 0 on a stream": _window_zero_stream,
    "6.9/3 WINDOW_UPDATE of length 3": _window_bad_length,
    "6.9.1/1 connection window above 2^31-1": _window_overflow_connection,
    "6.9.1/2 stream window above 2^31-1": _window_overflow_stream,
    "6.9.2/1 SETTINGS_INITIAL_WINDOW_SIZE overflowing a stream window": _initial_window_overflow,
    "6.10/1 CONTINUATION after END_HEADERS": _continuation_after_end_headers,
    "6.10/2 CONTINUATION on another stream": _continuation_other_stream,
    "6.10/3 CONTINUATION on stream 0": _zero_stream(CONTINUATION, b"\x82", END_HEADERS),
    "6.10/4 DATA between HEADERS and CONTINUATION": _data_between_headers_and_continuation,
    "6.10/5 HEADERS and CONTINUATIONs are accepted": _continuations_ok,
    "8.1/1 trailers without END_STREAM": _trailers_without_end_stream,
    "8.1.2/1 uppercase field name": _malformed([*request(), (b"X-Upper", b"1")]),
    "8.1.2.1/1 unknown pseudo-header": _malformed([*request(), (b":foo", b"1")]),
    "8.1.2.1/2 response pseudo-header in a request": _malformed([*request(), (b":status", b"200")]),
    "8.1.2.1/3 pseudo-header in trailers": _pseudo_in_trailers,
    "8.1.2.1/4 pseudo-header after a regular field": _malformed(
        [
            (b":method", b"GET"),
            (b"x-a", b"1"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"a"),
        ]
    ),
    "8.1.2.2/1 connection-specific field": _malformed([*request(), (b"connection", b"keep-alive")]),
    "8.1.2.2/2 te other than trailers": _malformed([*request(), (b"te", b"gzip")]),
    "8.1.2.3/1 empty :path": _malformed(
        [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"")]
    ),
    "8.1.2.3/2 no :method": _malformed(request()[1:]),
    "8.1.2.3/3 no :scheme": _malformed([request()[0], *request()[2:]]),
    "8.1.2.3/4 no :path": _malformed(request()[:3]),
    "8.1.2.3/5 duplicate :method": _malformed([*request()[:1], *request()]),
    "8.1.2.3/6 duplicate :scheme": _malformed([*request()[:2], request()[1], *request()[2:]]),
    "8.1.2.3/7 duplicate :path": _malformed([*request(), request()[3]]),
    "8.1.2.6/1 content-length and one DATA frame disagree": _content_length_mismatch,
    "8.1.2.6/2 content-length and several DATA frames disagree": _content_length_mismatch_multi,
    "8.2/1 PUSH_PROMISE from a client": _push_promise_from_client,
    "hpack/2.3.3/1 index beyond the tables": _hpack(b"\xff\x7f"),
    "hpack/2.3.3/2 literal with a name index beyond the tables": _hpack(b"\x7f\x7f\x01a"),
    "hpack/4.2/1 table size update above the setting": _hpack(b"\x3f\xe1\x7f" + b"\x82"),
    "hpack/5.2/1 Huffman string with EOS": _hpack(b"\x40\x84\xff\xff\xff\xff\x01a"),
    "hpack/5.2/2 Huffman padding longer than 7 bits": _hpack(b"\x40\x82\x1f\xff\x01a"),
    "hpack/5.2/3 Huffman padding not of EOS bits": _hpack(b"\x40\x81\x18\x01a"),
    "hpack/6.3/1 table size update after a field": _hpack(b"\x82\x20"),
    "hpack/6.3/2 table size update to 0 first is accepted": _hpack_size_update_ok,
}


def run_case(name: str, port: int, tls: ssl.SSLContext | None) -> bool:
    if name == "3.5/1 invalid connection preface":
        return _bad_preface(port, tls)
    c = Conn(port, tls)
    try:
        return bool(CASES[name](c))
    finally:
        c.close()


ALL: list[str] = ["3.5/1 invalid connection preface", *CASES]
