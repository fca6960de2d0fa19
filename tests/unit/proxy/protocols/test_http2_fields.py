"""``http2_fields`` accepts and refuses exactly what ``h2``'s inbound validation did.

Each case goes through both: ``h2.utilities.validate_headers`` after
``normalize_inbound_headers`` (what the server codec used before) and ours.
"""

from __future__ import annotations

import pytest
from h2.exceptions import ProtocolError
from h2.utilities import HeaderValidationFlags, normalize_inbound_headers, validate_headers

from turnout.proxy.protocols.http2_fields import request_fields, trailer_fields

BASE = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"a.example"),
    (b":path", b"/"),
]
REQUEST = HeaderValidationFlags(False, False, False, False)
TRAILER = HeaderValidationFlags(False, True, False, False)

REQUESTS = [
    BASE,
    [*BASE, (b"x-a", b"1"), (b"cookie", b"a=1"), (b"x-b", b""), (b"cookie", b"b=2")],
    [*BASE, (b"te", b"trailers")],
    [*BASE, (b"te", b"TRAILERS")],
    [*BASE, (b"te", b"gzip")],
    [*BASE, (b"connection", b"close")],
    [*BASE, (b"transfer-encoding", b"chunked")],
    [*BASE, (b"X-Upper", b"1")],
    [*BASE, (b"x a", b"1")],
    [*BASE, (b"x:a", b"1")],
    [*BASE, (b"", b"1")],
    [*BASE, (b"x-\xff", b"1")],
    [*BASE, (b"x-a", b"a\x00b")],
    [*BASE, (b"x-a", b"a\rb")],
    [*BASE, (b"x-a", b" a")],
    [*BASE, (b"x-a", b"a\t")],
    [*BASE, (b"x-a", b"a\x7fb\x01")],  # allowed by h2 (build_head refuses it later)
    [*BASE, (b":method", b"POST")],
    [*BASE, (b":foo", b"1")],
    [
        (b":method", b"GET"),
        (b"x-a", b"1"),
        (b":path", b"/"),
        (b":scheme", b"http"),
        (b":authority", b"a"),
    ],
    BASE[1:],
    [BASE[0], BASE[2], BASE[3]],
    [BASE[0], BASE[1], BASE[2]],
    [*BASE, (b":status", b"200")],
    [*BASE, (b":protocol", b"websocket")],
    [(b":method", b"CONNECT"), (b":authority", b"a:443")],
    [(b":method", b"CONNECT"), (b":authority", b"a:443"), (b":path", b"/")],
    [(b":method", b"CONNECT"), *BASE[1:], (b":protocol", b"websocket")],
    [(b":method", b"CONNECT"), (b":authority", b"a:443"), (b":protocol", b"websocket")],
    [BASE[0], BASE[1], BASE[3]],
    [BASE[0], BASE[1], BASE[3], (b"host", b"b.example")],
    [*BASE, (b"host", b"a.example")],
    [*BASE, (b"host", b"b.example")],
    [*BASE, (b"host", b"a.example"), (b"host", b"a.example")],
    [BASE[0], BASE[1], BASE[2], (b":path", b"")],
]


def h2_result(headers: list[tuple[bytes, bytes]], flags: HeaderValidationFlags) -> object:
    try:
        return [
            tuple(h) for h in validate_headers(normalize_inbound_headers(headers, flags), flags)
        ]
    except ProtocolError:
        return ProtocolError


def ours(fn: object, headers: list[tuple[bytes, bytes]]) -> object:
    try:
        return fn(headers)  # type: ignore[operator]
    except ProtocolError:
        return ProtocolError


@pytest.mark.parametrize("headers", REQUESTS)
def test_requests_as_h2(headers: list[tuple[bytes, bytes]]) -> None:
    assert ours(request_fields, headers) == h2_result(headers, REQUEST)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"grpc-status", b"0")],
        [(b"x-a", b"1"), (b"cookie", b"a"), (b"cookie", b"b")],
        [(b":path", b"/")],
        [(b"X-A", b"1")],
        [(b"te", b"gzip")],
        [(b"x-a", b"a\n")],
        [(b"keep-alive", b"1")],
    ],
)
def test_trailers_as_h2(headers: list[tuple[bytes, bytes]]) -> None:
    assert ours(trailer_fields, headers) == h2_result(headers, TRAILER)


def test_stricter_than_h2_pseudo_header_after_cookie() -> None:
    with pytest.raises(ProtocolError):
        request_fields([(b"cookie", b"a"), *BASE])
