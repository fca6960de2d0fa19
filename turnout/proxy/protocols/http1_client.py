"""Upstream side of the HTTP/1.1 codec: parses responses, sans-IO.

Call ``expect(head_request)`` before sending each request, then ``feed`` response bytes
and ``feed_eof`` when the upstream closes. Interim 1xx responses are reported through
``response_informational`` (``100 Continue`` is swallowed: the gateway answers
``Expect`` itself); a ``101`` reports ``response_head`` with ``upgrade`` set and every
later byte goes to ``tunnel_data``. A response to HEAD ends at its head whatever its
Content-Length says (llhttp cannot be told, so the parser is replaced). A body without
Content-Length or chunking ends at EOF (``close_delimited``).

The request side is rendering only: ``render_request`` makes the head the gateway sends
upstream from a ``RequestHead`` (with the gateway's X-Forwarded-* and X-Request-Id), and
``request_bytes``/``body_bytes``/``end_bytes`` frame the body for it (chunked or not).
"""

from __future__ import annotations

from typing import Final, Protocol

import httptools

from turnout.core.headers import RESPONSE_CONSUMED
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.http1 import FORBIDDEN_TRAILER_PREFIX, FORBIDDEN_TRAILERS
from turnout.proxy.protocols.http1_wire import chunk, last_chunk

# Response headers that describe one hop's framing or connection; re-made per hop.
RESPONSE_HOP_BY_HOP = RESPONSE_CONSUMED


class ClientEvents(Protocol):
    def response_informational(self, head: ResponseHead) -> None: ...
    def response_head(self, head: ResponseHead) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_complete(self, trailers: Headers | None) -> None: ...
    def tunnel_data(self, data: bytes) -> None: ...
    def protocol_error(self, message: str) -> None: ...


class Http1ClientConnection:
    __slots__ = (
        "_cl_value",
        "_conn_tokens",
        "_failed",
        "_fed",
        "_head",
        "_head_request",
        "_headers",
        "_in_trailers",
        "_max_header_bytes",
        "_parser",
        "_seen",
        "_status",
        "_te_seen",
        "_trailers",
        "_tunnel",
        "_upgrade_value",
        "done",
        "handler",
        "received_any",
        "reusable",
    )

    def __init__(self, handler: ClientEvents, max_header_bytes: int = 65536) -> None:
        self.handler: ClientEvents = handler
        self._max_header_bytes = max_header_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._tunnel = False
        self._failed = False
        self._head_request = False
        self.received_any = False  # any byte of the current response arrived
        self.reusable = True
        self.done = True
        self._head: ResponseHead | None = None
        self._headers: Headers = []
        self._trailers: Headers = []
        self._in_trailers = False
        self._seen = 0
        self._status = 0
        self._cl_value: bytes | None = None
        self._te_seen = False
        self._conn_tokens: list[bytes] = []
        self._upgrade_value: bytes | None = None

    def expect(self, head_request: bool) -> None:
        """A request was sent; the next response answers it."""
        self._head_request = head_request
        self.received_any = False
        self.done = False
        self._head = None
        self._fed = 0
        self._seen = 0

    def feed(self, data: bytes) -> None:
        if self._tunnel:
            self.handler.tunnel_data(data)
            return
        if self._failed:
            return
        self.received_any = True
        if self.done:
            # Bytes nobody asked for (a stray response, garbage): never reuse this socket.
            self.reusable = False
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            self._tunnel = True
            if rest:
                self.handler.tunnel_data(rest)
        except httptools.HttpParserCallbackError as exc:
            self._error(str(exc.__context__ or exc))
        except httptools.HttpParserError as exc:
            self._error(f"malformed response: {exc}")
        else:
            if self._head is None and not self.done:
                # The head is still incomplete and llhttp buffers partial fields itself.
                self._fed += len(data)
                if self._fed > self._max_header_bytes:
                    self._error("upstream response header section too large")
        if self._head_request and self._head is not None and not self.done:
            self._finish_head_response()

    def feed_eof(self) -> None:
        """The upstream closed its side.

        Nothing is reported when no byte of the response arrived: the caller sees the
        connection loss itself and may retry the request on another connection.
        """
        self.reusable = False
        if self._tunnel or self._failed or self.done or not self.received_any:
            return
        head = self._head
        if head is not None and head.content_length is None and not head.chunked:
            self._complete(None)  # close-delimited body: EOF is its end
        else:
            self._error("upstream closed the connection before the response was complete")

    # -- llhttp callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        self._seen += len(name) + len(value)
        if self._seen > self._max_header_bytes:
            what = "trailer" if self._in_trailers else "response header"
            raise ValueError(f"upstream {what} section too large")
        if self._in_trailers:
            if lname not in FORBIDDEN_TRAILERS and not lname.startswith(FORBIDDEN_TRAILER_PREFIX):
                self._trailers.append((lname, value))
            return
        if lname in RESPONSE_HOP_BY_HOP:
            if lname == b"content-length":
                self._cl_value = value
            elif lname == b"transfer-encoding":
                if any(not c.strip() for c in value.split(b",")):
                    # Read as chunked by llhttp, not by stricter parsers: never guess.
                    raise ValueError("upstream Transfer-Encoding has an empty element")
                self._te_seen = True
            elif lname == b"connection":
                self._conn_tokens.extend(t.strip().lower() for t in value.split(b","))
            elif lname == b"upgrade":
                self._upgrade_value = value.strip().lower()
            return
        self._headers.append((lname, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        self._status = status
        headers = self._headers
        if self._conn_tokens:
            nominated = set(self._conn_tokens) - {b"close", b"keep-alive", b"upgrade"}
            if nominated:
                headers = [h for h in headers if h[0] not in nominated]
        head = ResponseHead(status, headers)
        if status < 200 and status != 101:
            self._reset()  # the final response follows on the same connection
            if status != 100:
                self.handler.response_informational(head)
            return
        self._in_trailers = True
        self._trailers = []
        self._seen = 0  # trailers get a budget of their own
        head.chunked = self._te_seen
        if self._cl_value is not None and not self._te_seen:
            head.content_length = int(self._cl_value)
        head.keep_alive = bool(parser.should_keep_alive())
        if status == 101:
            head.upgrade = self._upgrade_value
        self._head = head
        self._headers = []  # a fresh list for the next response; the head keeps this one
        self._cl_value = self._upgrade_value = None
        self._te_seen = False
        if self._conn_tokens:
            self._conn_tokens = []
        self.handler.response_head(head)

    def on_body(self, body: bytes) -> None:
        if self._head_request:
            self.reusable = False  # a body after a HEAD response: the framing is off
            return
        self.handler.response_body(body)

    def on_message_complete(self) -> None:
        if self._status < 200 or self._head_request or self._status == 101:
            return
        self._complete(self._trailers or None)

    # -- internals ------------------------------------------------------------------------

    def _reset(self) -> None:
        self._headers = []
        self._trailers = []
        self._in_trailers = False
        self._seen = 0
        self._status = 0
        self._cl_value = None
        self._te_seen = False
        self._conn_tokens = []
        self._upgrade_value = None

    def _finish_head_response(self) -> None:
        # llhttp would wait for Content-Length bytes that a HEAD response never has.
        self._parser = httptools.HttpResponseParser(self)
        self._complete(None)

    def _complete(self, trailers: Headers | None) -> None:
        head = self._head
        self.done = True
        self._in_trailers = False
        if head is None or not head.keep_alive:
            self.reusable = False
        self.handler.response_complete(trailers)

    def _error(self, message: str) -> None:
        self._failed = True
        self.reusable = False
        self.handler.protocol_error(message)


# -- request side: rendering ----------------------------------------------------------------

# method, target, host, headers, x-forwarded-for, -proto, -host, x-request-id, framing
_REQUEST_HEAD: Final = (
    b"%s %s HTTP/1.1\r\nhost: %s\r\n%sx-forwarded-for: %s\r\nx-forwarded-proto: %s\r\n"
    b"x-forwarded-host: %s\r\nx-request-id: %s\r\n%s\r\n"
)


def forwarded_for(head: RequestHead, client_ip: bytes) -> bytes:
    """X-Forwarded-For as sent upstream: the client's chain, then the client."""
    xff = head.forwarded_for
    return xff + b", " + client_ip if xff else client_ip


def render_request(head: RequestHead, client_ip: bytes, scheme: bytes) -> bytes:
    """The HTTP/1.1 request head sent upstream for ``head``."""
    if head.upgrade is not None:
        framing = b"connection: upgrade\r\nupgrade: %s\r\n" % head.upgrade
    elif head.chunked:
        framing = b"transfer-encoding: chunked\r\n"
    elif head.content_length is not None:
        framing = b"content-length: %d\r\n" % head.content_length
    else:
        framing = b""
    headers = head.headers
    xff = head.forwarded_for
    return _REQUEST_HEAD % (
        head.method,
        head.path + b"?" + head.query if head.query else head.path,
        head.authority,
        b"".join([b"%s: %s\r\n" % h for h in headers]) if headers else b"",
        xff + b", " + client_ip if xff else client_ip,
        scheme,
        head.original_authority,
        head.request_id,
        framing,
    )


def body_bytes(chunked: bool, data: bytes) -> bytes:
    """One request-body chunk as framed on the wire."""
    return chunk(data) if chunked else data


def end_bytes(chunked: bool, trailers: Headers | None) -> bytes:
    """The end of a request body on the wire (nothing unless chunked)."""
    return last_chunk(trailers) if chunked else b""


def request_bytes(
    head: RequestHead,
    client_ip: bytes,
    scheme: bytes,
    body: list[bytes] | None,
    end: bool,
    trailers: Headers | None,
) -> bytes:
    """Head, the body so far and, when ``end``, its end: one write's worth."""
    data = render_request(head, client_ip, scheme)
    chunked = head.chunked
    if not body and not (end and chunked):
        return data
    parts = [data]
    if body:
        if chunked:
            parts.extend([chunk(part) for part in body])
        else:
            parts.extend(body)
    if end and chunked:
        parts.append(last_chunk(trailers))
    return b"".join(parts)
