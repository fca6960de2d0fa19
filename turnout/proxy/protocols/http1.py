"""HTTP/1.1 codec, sans-IO: bytes in, callbacks out; serialisers return bytes.

``Http1ServerConnection`` parses what a client sends (httptools/llhttp does the framing,
which already refuses CL+TE, duplicate Content-Length, bad chunk sizes, obs-fold, bare
CR/LF and ~30 other smuggling vectors). On top it enforces what llhttp accepts but a
proxy must not (reliability.md): HTTP/0.9 and unknown versions, Transfer-Encoding in
HTTP/1.0 or with empty list elements, missing or duplicate Host, invalid Host, fragments
and non-origin targets, size and count limits (414/431/413), CONNECT, and unsupported
``Upgrade`` tokens, which are stripped (never tunnelled: no h2c smuggling). Every refusal
is reported once through ``protocol_error(status, message)`` and the connection accepts
nothing more.

Pipelining: requests that arrive while an earlier one is still being answered have
their events queued here and replayed when the handler calls ``response_finished()``,
so the handler only ever sees one request at a time. The handler should stop reading
from the socket while ``backlogged`` is true.

``Http1ClientConnection`` parses upstream responses: interim 1xx responses, HEAD
responses (no body whatever the headers say), 204/304, chunked, Content-Length and
close-delimited bodies, trailers, and a ``101`` switch to a tunnel.
"""

from __future__ import annotations

import re
from typing import Any, Final, Protocol, cast

import httptools

from turnout.core import headers as header_sets
from turnout.proxy.protocols.heads import Headers, RequestHead
from turnout.proxy.protocols.hosts import (
    InvalidTarget,
    normalize_path,
    path_needs_normalizing,
    split_authority,
)

# Header sets come from turnout.core.headers (one module, each set citing its RFC); the
# Final names here let compiled code read them as statics.
# Header names the codec consumes; they never appear in ``RequestHead.headers``.
HOP_BY_HOP: Final = header_sets.REQUEST_CONSUMED
# Headers the gateway sets itself: the client's values are read here (X-Forwarded-For is
# extended, a sane X-Request-Id kept) or replaced, never forwarded as sent.
GATEWAY_SET: Final = header_sets.GATEWAY_SET
SPECIAL: Final = header_sets.REQUEST_REPLACED
_SANE_ID: Final = re.compile(rb"[\x21-\x7e]{1,128}")
# Names a client's ``Connection`` header may not remove (Traefik CVE-2024-45410 class).
PROTECTED: Final = header_sets.PROTECTED_FROM_CONNECTION
# Connection tokens that are options, not header names to remove.
CONNECTION_OPTIONS: Final = header_sets.CONNECTION_OPTIONS
# Trailer fields that would change framing, routing or auth are dropped.
FORBIDDEN_TRAILERS: Final = header_sets.FORBIDDEN_TRAILERS
FORBIDDEN_TRAILER_PREFIX: Final = header_sets.FORBIDDEN_TRAILER_PREFIX
ALLOWED_UPGRADES: Final = frozenset({b"websocket"})
_OWS: Final = frozenset(b" \t")


# Host / :authority values seen recently → routing host; most traffic uses a handful.
_AUTHORITIES: dict[bytes, str] = {}


def _parse_authority(authority: bytes) -> str:
    try:
        host, _port = split_authority(authority)
    except InvalidTarget as exc:
        raise _RequestRejected(400, str(exc)) from None
    if len(_AUTHORITIES) >= 1024:
        _AUTHORITIES.clear()
    _AUTHORITIES[authority] = host
    return host


class Limits:
    __slots__ = ("max_body", "max_header_bytes", "max_headers", "max_url")

    def __init__(
        self,
        max_url: int = 8192,
        max_header_bytes: int = 32768,
        max_headers: int = 100,
        max_body: int = 0,
    ) -> None:
        self.max_url = max_url
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body = max_body  # 0 = unlimited


class ServerEvents(Protocol):
    def request_received(self, head: RequestHead) -> None: ...
    def request_body(self, data: bytes) -> None: ...
    def request_complete(self, trailers: Headers | None) -> None: ...
    def tunnel_data(self, data: bytes) -> None: ...
    def protocol_error(self, status: int, message: str) -> None: ...


class _RequestRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# Event kinds queued for pipelined requests.
_HEAD, _BODY, _END, _ERROR = 0, 1, 2, 3


class Http1ServerConnection:
    """Parses requests from one client connection. See the module docstring."""

    __slots__ = (
        "_body_fed",
        "_body_seen",
        "_chunks",
        "_failed",
        "_handler",
        "_head",
        "_header_bytes",
        "_header_count",
        "_headers",
        "_in_head",
        "_in_trailers",
        "_index",
        "_limits",
        "_manual_body",
        "_parser",
        "_pending_bytes",
        "_queue",
        "_serving",
        "_specials",
        "_trailers",
        "_tunnel",
        "_upgrading",
        "_url",
        "scheme",
    )

    def __init__(self, handler: ServerEvents, limits: Limits, scheme: bytes = b"http") -> None:
        self._handler = handler
        self._limits = limits
        self.scheme = scheme
        self._parser = httptools.HttpRequestParser(self)
        self._queue: list[tuple[int, object]] = []
        self._serving = False  # a request's response is in progress
        self._failed = False
        self._tunnel = False
        self._manual_body = 0  # body bytes to pass through by hand (stripped upgrade + CL)
        self._head: RequestHead | None = None
        self._upgrading: RequestHead | None = None
        self._pending_bytes = 0  # bytes fed since the last head or message completed
        self._in_head = False  # a request head has begun and is not complete yet
        self._body_fed = 0  # bytes fed while inside a body (framing and trailers included)
        self._chunks = 0
        self._url = b""
        self._headers: Headers = []
        self._trailers: Headers = []
        self._in_trailers = False
        self._header_bytes = 0
        self._header_count = 0
        self._body_seen = 0
        # (name, value) of headers the codec interprets itself (Host, framing, ...)
        self._specials: Headers = []
        self._index: dict[bytes, bytes] = {}

    # -- public API ---------------------------------------------------------------------

    @property
    def backlogged(self) -> bool:
        """True while pipelined requests wait: stop reading the socket."""
        return bool(self._queue)

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def idle(self) -> bool:
        """No request in progress and (as far as we can tell) none partially received."""
        return not self._serving and not self._queue and not self._in_head

    def feed(self, data: bytes) -> None:
        if self._failed:
            return
        if self._head is not None:
            self._body_fed += len(data)
        if self._tunnel:
            self._handler.tunnel_data(data)
            return
        if self._manual_body:
            data = self._take_manual_body(data)
            if not data:
                return
        self._pending_bytes += len(data)
        upgrade_at = -1
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # Handled below, outside this block: bytes re-fed from here would make a
            # refusal's HttpParserCallbackError carry this exception as its context
            # instead of the _RequestRejected, and escape as an internal error (500).
            upgrade_at = exc.args[0]
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _RequestRejected):
                self._fail(cause.status, cause.message)
            else:
                raise
        except httptools.HttpParserInvalidURLError:
            self._fail(400, "invalid request target")
        except httptools.HttpParserInvalidMethodError:
            self._fail(400, "invalid method")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed request: {exc}")
        else:
            # llhttp buffers a partial header name/value itself, without bound, so the
            # bytes received since the last complete head are capped here.
            if self._head is None:
                if self._pending_bytes > self._head_budget():
                    self._fail(431, "request header section too large")
            elif self._body_fed - self._body_seen > self._framing_budget():
                # Chunk framing and trailers are buffered by llhttp too (a trailer value
                # is accumulated whole): cap what is not body.
                self._fail(431, "chunk framing or trailer section too large")
        if upgrade_at >= 0:
            self._after_upgrade(data, upgrade_at)

    def _head_budget(self) -> int:
        return self._limits.max_url + self._limits.max_header_bytes + 4096

    def _framing_budget(self) -> int:
        return self._limits.max_header_bytes + 4096 + 64 * self._chunks

    def response_finished(self) -> None:
        """The handler has fully answered the current request; replay the next one.

        Replays the next request's head and every body/end event queued behind it, and
        stops before the head (or error) of the request after that.
        """
        self._serving = False
        queue = self._queue
        while queue:
            kind = queue[0][0]
            if self._serving and kind in (_HEAD, _ERROR):
                return
            self._dispatch(*queue.pop(0))

    # -- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_head = True

    def on_chunk_header(self) -> None:
        self._chunks += 1

    def on_url(self, url: bytes) -> None:
        if self._url:
            self._url += url
        else:
            self._url = url
        if len(self._url) > self._limits.max_url:
            raise _RequestRejected(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            what = "trailer fields" if self._in_trailers else "request headers"
            raise _RequestRejected(431, f"too many {what}")
        if self._header_bytes > self._limits.max_header_bytes:
            what = "trailer" if self._in_trailers else "request header"
            raise _RequestRejected(431, f"{what} section too large")
        if value and value[-1] in _OWS:
            value = value.rstrip(b" \t")  # RFC 9110 §5.5: not part of the field value
        lname = name.lower()
        if self._in_trailers:
            if lname not in FORBIDDEN_TRAILERS and not lname.startswith(FORBIDDEN_TRAILER_PREFIX):
                self._trailers.append((lname, value))
            return
        if lname in SPECIAL:
            self._specials.append((lname, value))
        elif 0x5F in lname:  # "_" (an int needle: see hosts.path_needs_normalizing)
            # nginx's default: names with '_' are dropped, so "Content_Length" can never
            # be read as framing by a lenient upstream (Envoy edge rule).
            return
        else:
            self._headers.append((lname, value))
            index = self._index
            index[lname] = index[lname] + b"," + value if lname in index else value

    def on_headers_complete(self) -> None:
        self._in_trailers = True
        self._in_head = False
        head = self._build_head()
        self._head = head
        self._pending_bytes = 0
        self._header_bytes = self._header_count = 0  # trailers get a budget of their own
        if self._serving or self._queue:
            self._queue.append((_HEAD, head))
        else:
            self._serving = True
            self._handler.request_received(head)

    def on_body(self, body: bytes) -> None:
        head = self._head
        if head is None:  # pragma: no cover - llhttp calls on_body only after headers
            return
        self._body_seen += len(body)
        limit = self._limits.max_body
        if limit and self._body_seen > limit:
            raise _RequestRejected(413, "request body too large")
        if self._queue:
            self._queue.append((_BODY, body))
        else:
            self._handler.request_body(body)

    def on_message_complete(self) -> None:
        if self._parser.should_upgrade():
            # llhttp stops at the head of an upgrade request and raises; remember which
            # request it was for ``_after_upgrade``.
            self._upgrading = self._head
            if self._head is not None and self._head.upgrade is None:
                return  # a stripped upgrade: ``_after_upgrade`` finishes the message
        self._end_message()

    # -- internals ------------------------------------------------------------------------

    def _reset_message(self) -> None:
        self._url = b""
        self._headers = []
        self._index = {}
        self._specials = []
        self._trailers = []
        self._in_trailers = False
        self._header_bytes = 0
        self._header_count = 0
        self._body_seen = 0
        self._body_fed = 0
        self._chunks = 0

    def _end_message(self) -> None:
        trailers = self._trailers or None
        self._head = None
        self._pending_bytes = 0
        if self._queue:
            self._queue.append((_END, trailers))
        else:
            self._handler.request_complete(trailers)

    def _dispatch(self, kind: int, payload: object) -> None:
        h = self._handler
        if kind == _HEAD:
            self._serving = True
            h.request_received(payload)  # type: ignore[arg-type]
        elif kind == _BODY:
            h.request_body(payload)  # type: ignore[arg-type]
        elif kind == _END:
            h.request_complete(payload)  # type: ignore[arg-type]
        else:
            status, message = cast(tuple[int, str], payload)
            h.protocol_error(status, message)

    def _fail(self, status: int, message: str) -> None:
        self._failed = True
        if self._queue or (self._serving and self._head is None):
            # It concerns a request behind the one being answered: report it in turn.
            self._queue.append((_ERROR, (status, message)))
        else:
            # No request in progress, or the body of the one being answered is bad.
            self._handler.protocol_error(status, message)

    def _build_head(self) -> RequestHead:
        parser = self._parser
        version = parser.get_http_version()
        if version == "1.1":
            vbytes = b"1.1"
        elif version == "1.0":
            vbytes = b"1.0"
        elif version == "0.9":
            raise _RequestRejected(400, "HTTP/0.9 is not supported")
        else:
            raise _RequestRejected(505, f"HTTP/{version} is not supported")
        method = parser.get_method()
        if method == b"CONNECT":
            raise _RequestRejected(405, "CONNECT is not supported")
        path, query, authority = self._split_target(method)
        host_value: bytes | None = None
        host_count = 0
        xff = rid = cl_value = expect = upgrade = None
        tokens: list[bytes] = []
        te_values: list[bytes] = []
        for lname, value in self._specials:
            if lname == b"host":
                host_count += 1
                host_value = value
            elif lname == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
            elif lname == b"x-request-id":
                rid = value
            elif lname == b"connection":
                tokens.extend(t.strip().lower() for t in value.split(b","))
            elif lname == b"transfer-encoding":
                te_values.append(value)
            elif lname == b"content-length":
                cl_value = value  # llhttp has checked it: digits only, no duplicates
            elif lname == b"expect":
                expect = value.strip().lower()
            elif lname == b"upgrade":
                upgrade = value.strip().lower()
            # keep-alive, te, trailer, proxy-*: hop-by-hop, dropped.
        if host_count > 1:
            raise _RequestRejected(400, "duplicate Host header")
        if host_value is None:
            if vbytes == b"1.1":  # even with an absolute-form target (RFC 9112 §3.2)
                raise _RequestRejected(400, "missing Host header")
        elif not host_value:
            raise _RequestRejected(400, "empty Host header")
        if not authority:
            authority = host_value or b""
        host = ""
        if authority:
            host = _AUTHORITIES.get(authority, "")
            if not host:
                host = _parse_authority(authority)
        headers = self._headers
        if tokens:
            nominated = {t for t in tokens if t and t not in PROTECTED}
            if nominated - CONNECTION_OPTIONS:
                headers = [h for h in headers if h[0] not in nominated]
                for name in nominated:
                    self._index.pop(name, None)
        head = RequestHead(method, path, query, headers, authority, host, vbytes, self._index)
        head.forwarded_for = xff
        if rid is not None and _SANE_ID.fullmatch(rid):
            head.request_id = rid
        if te_values:
            if vbytes == b"1.0":
                raise _RequestRejected(400, "Transfer-Encoding is not allowed in HTTP/1.0")
            codings = [c for v in te_values for c in (x.strip().lower() for x in v.split(b","))]
            if b"" in codings:
                # ",chunked", "chunked," or "chunked, ,": llhttp reads them as chunked, a
                # strict parser behind us may not; refuse rather than guess (RFC 9112 §6.1).
                raise _RequestRejected(400, "empty element in Transfer-Encoding")
            if codings[-1] != b"chunked":
                # The body length cannot be determined (RFC 9112 §6.1: 400 and close).
                raise _RequestRejected(400, "chunked must be the final transfer coding")
            if len(codings) > 1:
                # llhttp accepts e.g. "gzip, chunked"; relaying it as plain chunked would
                # hand the upstream still-encoded bytes (RFC 9112 §6.1: 501).
                raise _RequestRejected(501, "unsupported transfer coding")
            head.chunked = True
        else:
            cl = int(cl_value) if cl_value is not None else None
            head.content_length = cl
            if cl and self._limits.max_body and cl > self._limits.max_body:
                raise _RequestRejected(413, "request body too large")
        head.keep_alive = bool(parser.should_keep_alive())
        if expect is not None:
            if expect != b"100-continue":
                raise _RequestRejected(417, "unsupported Expect value")
            head.expect_continue = vbytes == b"1.1"
        if upgrade is not None and parser.should_upgrade():
            token = upgrade.split(b"/", 1)[0]
            if token in ALLOWED_UPGRADES and b"upgrade" in tokens:
                if head.has_body:
                    raise _RequestRejected(400, "an upgrade request cannot carry a body")
                head.upgrade = token
        return head

    def _split_target(self, method: bytes) -> tuple[bytes, bytes, bytes]:
        url = self._url
        if 0x23 in url:  # "#"
            raise _RequestRejected(400, "fragment in request target")
        authority = b""
        if url[:1] != b"/":
            if url == b"*" and method == b"OPTIONS":
                return b"*", b"", b""
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise _RequestRejected(400, "invalid request target") from None
            # httptools' stubs say bytes/int, but absent URL parts are None; compiled code
            # checks the stub types at runtime, so go through Any and say Optional.
            parts: Any = parsed
            schema: bytes | None = parts.schema
            host: bytes | None = parts.host
            port: int | None = parts.port
            userinfo: bytes | None = parts.userinfo
            if schema not in (b"http", b"https") or not host:
                raise _RequestRejected(400, "invalid request target")
            authority = host if 0x3A not in host else b"[" + host + b"]"
            if port is not None:
                authority += b":%d" % port
            if userinfo:
                raise _RequestRejected(400, "userinfo in request target")
            target_path: bytes | None = parts.path
            target_query: bytes | None = parts.query
            path = target_path or b"/"
            query = target_query or b""
        else:
            path, _, query = url.partition(b"?")
        if path_needs_normalizing(path):
            try:
                path = normalize_path(path)
            except InvalidTarget as exc:
                raise _RequestRejected(400, str(exc)) from None
        return path, query, authority

    def _after_upgrade(self, data: bytes, offset: int) -> None:
        head, self._upgrading = self._upgrading, None
        rest = data[offset:]
        if head is not None and head.upgrade is not None:
            # Websocket: the bytes after the head belong to the tunnel, which opens only if
            # the upstream answers 101; until then the handler buffers them.
            self._tunnel = True
            if rest:
                self._handler.tunnel_data(rest)
            return
        # A stripped upgrade (h2c, unknown token): continue as plain HTTP.
        if head is not None:
            if head.chunked:
                self._fail(400, "chunked body with an Upgrade header is not supported")
                return
            if head.content_length:
                self._manual_body = head.content_length
                rest = self._take_manual_body(rest)
            else:
                self._end_message()
        if rest:
            self.feed(rest)

    def _take_manual_body(self, data: bytes) -> bytes:
        n = min(self._manual_body, len(data))
        chunk, rest = data[:n], data[n:]
        self._manual_body -= n
        if chunk:
            if self._queue:
                self._queue.append((_BODY, chunk))
            else:
                self._handler.request_body(chunk)
        if self._manual_body == 0:
            self._end_message()
        return rest
