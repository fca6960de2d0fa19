"""Validation of received request and trailer fields (RFC 9113 §8.2, §8.3), in one pass.

``h2``'s ``validate_inbound_headers`` checks each header list through a chain of seven
generators, one Python-level call per field and check: after HPACK it was the largest
cost left in the server codec's profile (``bench/h2codec.py``). The server codec turns
it off and calls ``request_fields`` / ``trailer_fields`` here instead (from
``ServerH2Connection._receive_headers_frame``, where a ``ProtocolError`` becomes a reset
of that one stream, as ``h2``'s own did). This module is compiled with the hot path.

The checks are ``h2``'s (4.4), byte for byte: field names non-empty, without uppercase,
controls, space, DEL or non-ASCII, and without ``:`` after the first byte; values
without NUL, CR or LF and not starting or ending with SP or HTAB; ``te`` only
``trailers``; no connection-specific field; pseudo-header fields known, not repeated,
before the regular fields, none in trailers, ``:method`` always and ``:scheme`` and
``:path`` unless CONNECT, no ``:status``, ``:protocol`` only with CONNECT, an ordinary
CONNECT without ``:scheme`` and ``:path``; ``:authority`` or ``host`` present, equal if
both, ``host`` at most once; ``:path`` not empty. Cookie crumbs are joined with ``; ``
and moved last (``normalize_inbound_headers``, RFC 9113 §8.2.3). One difference, stricter:
a pseudo-header after a ``cookie`` field is refused too (``h2`` moved cookies to the end
before checking the order).
"""

from __future__ import annotations

from typing import Final

from h2.exceptions import ProtocolError

from turnout.core.headers import H2_FORBIDDEN_RECEIVED

CONNECTION_HEADERS: Final = H2_FORBIDDEN_RECEIVED
PSEUDO: Final = frozenset(
    (b":method", b":scheme", b":authority", b":path", b":status", b":protocol")
)


def _name_table() -> bytes:
    # 1 where a byte may appear in a field name (after a pseudo-header's leading ":").
    return bytes(
        0 if c <= 0x20 or c >= 0x7F or 0x41 <= c <= 0x5A or c == 0x3A else 1 for c in range(256)
    )


NAME_OK: Final = _name_table()


def _check_field(name: bytes, value: bytes) -> None:
    n = len(name)
    if n == 0:
        raise ProtocolError("Received header name with zero length.")
    table = NAME_OK
    for i in range(1 if name[0] == 0x3A else 0, n):
        if not table[name[i]]:
            raise ProtocolError(f"Illegal character in header name: {name!r}")
    if value:
        for c in value:
            if c == 0 or c == 0x0A or c == 0x0D:
                raise ProtocolError(f"Illegal character in header value: {value!r}")
        first = value[0]
        last = value[-1]
        if first == 0x20 or first == 0x09 or last == 0x20 or last == 0x09:
            raise ProtocolError(f"Received header value surrounded by whitespace {value!r}")
    if name in CONNECTION_HEADERS:
        raise ProtocolError(f"Connection-specific header field present: {name!r}.")
    if name == b"te" and value.lower() != b"trailers":
        raise ProtocolError(f"Invalid value for TE header: {value!r}")


def request_fields(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's fields, checked, cookies joined; raises ``ProtocolError``."""
    out: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    seen: set[bytes] = set()
    regular = False
    method: bytes | None = None
    authority: bytes | None = None
    host: bytes | None = None
    for field in headers:
        name = field[0]
        value = field[1]
        _check_field(name, value)
        if name[0] == 0x3A:  # ":"
            if name in seen:
                raise ProtocolError(f"Received duplicate pseudo-header field {name!r}")
            seen.add(name)
            if regular:
                raise ProtocolError(f"Received pseudo-header field out of sequence: {name!r}")
            if name not in PSEUDO:
                raise ProtocolError(f"Received custom pseudo-header field {name!r}")
            if name == b":method":
                method = value
            elif name == b":authority":
                authority = value
            elif name == b":path" and not value:
                raise ProtocolError("An empty :path header is forbidden")
        else:
            regular = True
            if name == b"cookie":
                cookies.append(value)
                continue
            if name == b"host":
                if host is not None:
                    raise ProtocolError("Request header block has multiple Host headers.")
                host = value
        out.append((name, value))
    if method is None:
        raise ProtocolError("Header block missing mandatory b':method' header")
    connect = method == b"CONNECT"
    if not connect or b":protocol" in seen:
        if b":scheme" not in seen or b":path" not in seen:
            raise ProtocolError("Header block missing mandatory :scheme or :path header")
    elif b":scheme" in seen or b":path" in seen:
        raise ProtocolError("Ordinary CONNECT MUST NOT include :scheme or :path")
    if b":status" in seen:
        raise ProtocolError("Encountered response-only headers {b':status'}")
    if not connect and b":protocol" in seen:
        raise ProtocolError("Encountered connect-request-only headers {b':protocol'}")
    if authority is None and host is None:
        raise ProtocolError("Request header block does not have an :authority or Host header.")
    if authority is not None and host is not None and authority != host:
        raise ProtocolError("Request header block has mismatched :authority and Host headers")
    if cookies:
        joined = b"; ".join(cookies)
        _check_field(b"cookie", joined)
        out.append((b"cookie", joined))
    return out


def trailer_fields(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The trailers, checked, cookies joined; raises ``ProtocolError``."""
    out: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    for field in headers:
        name = field[0]
        value = field[1]
        _check_field(name, value)
        if name[0] == 0x3A:
            raise ProtocolError(f"Received pseudo-header in trailer {name!r}")
        if name == b"cookie":
            cookies.append(value)
        else:
            out.append((name, value))
    if cookies:
        joined = b"; ".join(cookies)
        _check_field(b"cookie", joined)
        out.append((b"cookie", joined))
    return out
