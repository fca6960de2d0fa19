"""Request translation for the HTTP/2 server codec: an ``h2`` header list → ``RequestHead``.

RFC 9113 §8: ``:method``, ``:path`` (split into path and query, then the same
normalisation and rejection rules as HTTP/1.1: ``hosts.normalize_path``), and
``:authority`` (or ``host``) become the head's fields; regular fields keep their (already
lowercase) names. Framing and gateway-set fields are consumed exactly as the HTTP/1.1
codec does (``http1.SPECIAL``); ``te: trailers`` is kept, because gRPC servers check it.
A malformed request raises ``Malformed`` (the codec resets the stream), a well-formed
one the gateway will not serve raises ``Rejected`` with the HTTP status to answer.
"""

from __future__ import annotations

import re
from typing import Final

from turnout.proxy.protocols.heads import Headers, RequestHead
from turnout.proxy.protocols.hosts import (
    InvalidTarget,
    normalize_path,
    path_needs_normalizing,
    split_authority,
)
from turnout.proxy.protocols.http1 import (
    FORBIDDEN_TRAILER_PREFIX,
    FORBIDDEN_TRAILERS,
    SPECIAL,
    Limits,
)

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# h2 refuses NUL, CR and LF; the other control characters are refused here so that no
# byte an HTTP/1.1 upstream could misread is forwarded.
_BAD_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_PATH: Final = re.compile(rb"[\x21-\x7e]+")
_SANE_ID: Final = re.compile(rb"[\x21-\x7e]{1,128}")

# :authority values seen recently -> routing host; most traffic uses a handful.
_AUTHORITIES: dict[bytes, str] = {}


class Malformed(Exception):
    """A malformed request: the stream is reset with PROTOCOL_ERROR."""


class Rejected(Exception):
    """A well-formed request refused with an HTTP status on its own stream."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def build_head(headers: list[tuple[bytes, bytes]], ended: bool, limits: Limits) -> RequestHead:
    """The ``RequestHead`` of a request's HEADERS (already checked by ``h2``: pseudo-header
    order and duplicates, names, ``host`` against ``:authority``, ``content-length``).
    Raises ``Malformed`` (reset the stream) or ``Rejected`` (answer with a status)."""
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
                raise Rejected(501, "extended CONNECT is not supported")
            continue
        count += 1
        size += len(name) + len(value)
        if bad_value(value) is not None:
            raise Malformed("control character in a header value")
        if token(name) is None:
            raise Malformed("invalid header name")
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
        raise Rejected(431, "too many request headers")
    if size > limits.max_header_bytes:
        raise Rejected(431, "request header section too large")
    if token(method) is None:
        raise Malformed("invalid method")
    if method == b"CONNECT":
        raise Rejected(501, "CONNECT is not supported")
    if scheme != b"http" and scheme != b"https":
        raise Malformed("invalid :scheme")
    if len(path) > limits.max_url:
        raise Rejected(414, "request target too long")
    if _PATH.fullmatch(path) is None:
        raise Malformed("invalid :path")
    if path[0] != 0x2F:  # "/"
        if path != b"*" or method != b"OPTIONS":
            raise Malformed("invalid :path")
        query = b""
    else:
        if 0x23 in path:  # "#"
            raise Rejected(400, "fragment in request target")
        path, _, query = path.partition(b"?")
        if path_needs_normalizing(path):
            try:
                path = normalize_path(path)
            except InvalidTarget as exc:
                raise Rejected(400, str(exc)) from None
    if not authority:
        authority = host_value or b""
    if not authority:
        raise Rejected(400, "missing :authority")
    host = _AUTHORITIES.get(authority, "")
    if not host:
        try:
            host, _port = split_authority(authority)
        except InvalidTarget as exc:
            raise Rejected(400, str(exc)) from None
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
            raise Malformed("content-length without a body")
        max_body = limits.max_body
        if max_body and cl > max_body:
            raise Rejected(413, "request body too large")
        head.content_length = cl
    elif not ended:
        head.chunked = True  # forwarded chunked: the length is not known yet
    if expect is not None:
        if expect != b"100-continue":
            raise Rejected(417, "unsupported Expect value")
        head.expect_continue = not ended
    return head


def filter_trailers(headers: list[tuple[bytes, bytes]]) -> Headers:
    out: Headers = []
    for name, value in headers:
        if _BAD_VALUE.search(value) is not None or _TOKEN.fullmatch(name) is None:
            raise Malformed("invalid trailer field")
        if name not in FORBIDDEN_TRAILERS and not name.startswith(FORBIDDEN_TRAILER_PREFIX):
            out.append((name, value))
    return out
