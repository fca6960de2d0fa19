"""gRPC semantics the gateway itself needs, sans-IO: recognising a gRPC request, reading
its deadline (``grpc-timeout``), and answering gateway errors the way gRPC clients
understand them.

A gRPC client reads the outcome of a call from the ``grpc-status`` / ``grpc-message``
trailers, not from the HTTP status, so an error the gateway makes (no route, timeout,
rate limit, refused credentials, no healthy endpoint) is sent as HTTP 200 with
``content-type: application/grpc``, no message, and those trailers. The status codes
follow gRPC's HTTP-to-gRPC mapping, made more precise where the gateway knows the cause
(a timeout is DEADLINE_EXCEEDED, a missing route UNIMPLEMENTED).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote_from_bytes

from turnout.proxy.protocols.heads import Headers, RequestHead

OK: Final = 0
UNKNOWN: Final = 2
INVALID_ARGUMENT: Final = 3
DEADLINE_EXCEEDED: Final = 4
PERMISSION_DENIED: Final = 7
RESOURCE_EXHAUSTED: Final = 8
UNIMPLEMENTED: Final = 12
INTERNAL: Final = 13
UNAVAILABLE: Final = 14
UNAUTHENTICATED: Final = 16

_BY_HTTP: Final = {
    400: INTERNAL,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: UNIMPLEMENTED,
    408: DEADLINE_EXCEEDED,
    413: RESOURCE_EXHAUSTED,
    421: UNAVAILABLE,
    429: RESOURCE_EXHAUSTED,
    431: RESOURCE_EXHAUSTED,
    500: INTERNAL,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}

# grpc-timeout units (gRPC over HTTP/2, "Timeout"): hours ... nanoseconds
_UNITS: Final = {
    0x48: 3600.0,  # H
    0x4D: 60.0,  # M
    0x53: 1.0,  # S
    0x6D: 1e-3,  # m
    0x75: 1e-6,  # u
    0x6E: 1e-9,  # n
}
CONTENT_TYPE: Final = b"application/grpc"


def is_grpc(head: RequestHead) -> bool:
    ctype = head.received.get(b"content-type")
    return ctype is not None and ctype.startswith(CONTENT_TYPE)


def parse_timeout(value: bytes | None) -> float | None:
    """Seconds from a ``grpc-timeout`` value (1-8 digits and a unit), or None."""
    if value is None or not 2 <= len(value) <= 9:
        return None
    digits, unit = value[:-1], value[-1]
    scale = _UNITS.get(unit)
    if scale is None or not digits.isdigit():
        return None
    return int(digits) * scale


def status_for(http_status: int) -> int:
    return _BY_HTTP.get(http_status, UNKNOWN)


def error_trailers(http_status: int, message: bytes) -> Headers:
    """The trailers of a gateway-made error: ``grpc-status`` and a percent-encoded
    ``grpc-message`` (the spec's encoding for non-printable and '%' bytes)."""
    encoded = quote_from_bytes(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode()
    return [(b"grpc-status", b"%d" % status_for(http_status)), (b"grpc-message", encoded)]
