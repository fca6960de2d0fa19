"""The protocol-neutral message heads every codec produces and every filter reads.

Header names are lowercase bytes (lowered once by the codec, as HTTP/2 requires and as
Envoy and HAProxy do for HTTP/1), values are bytes exactly as received. ``headers`` is a
list of ``(name, value)`` pairs in arrival order; repeated names stay separate entries.
Hop-by-hop and framing headers are *not* in ``headers``: the codec consumes them into
typed fields (``content_length``, ``chunked``, ``keep_alive``, ``upgrade``, ...) so no
filter can smuggle framing through, and each side re-serialises framing itself.
"""

from __future__ import annotations

from typing import Final

Headers = list[tuple[bytes, bytes]]


def index_headers(headers: Headers) -> dict[bytes, bytes]:
    """``name -> value``, repeated names joined with "," (RFC 9110 list semantics)."""
    index: dict[bytes, bytes] = {}
    for name, value in headers:
        index[name] = index[name] + b"," + value if name in index else value
    return index


class RequestHead:
    """A request as the gateway understood it."""

    __slots__ = (
        "authority",
        "chunked",
        "content_length",
        "expect_continue",
        "forwarded_for",
        "headers",
        "host",
        "keep_alive",
        "method",
        "original_authority",
        "path",
        "query",
        "received",
        "request_id",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        path: bytes,
        query: bytes,
        headers: Headers,
        authority: bytes = b"",
        host: str = "",
        version: bytes = b"1.1",
        received: dict[bytes, bytes] | None = None,
    ) -> None:
        self.method = method
        self.path = path  # normalised path, no query
        self.query = query  # raw query string without '?', b"" when absent
        self.headers = headers
        # Headers as received, each name once with repeated values joined by ",": routing
        # and logging read it; filters change ``headers`` only. Framing, Host and the
        # gateway-set X-Forwarded-*/X-Request-Id are in neither.
        self.received = received if received is not None else index_headers(headers)
        self.authority = authority  # upstream Host (filters may rewrite it)
        self.original_authority = authority  # Host / :authority as the client sent it
        self.host = host  # lowercase host name without port, for routing
        self.version = version
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self.expect_continue = False
        self.upgrade: bytes | None = None  # lowercase upgrade token when tunnelling is asked
        self.request_id = b""  # the client's x-request-id if sane, else generated
        self.forwarded_for: bytes | None = None  # the client's X-Forwarded-For

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def target(self) -> bytes:
        return self.path + b"?" + self.query if self.query else self.path

    def get(self, name: bytes) -> bytes | None:
        """Value of lowercase header ``name`` as received (repeats joined by ",")."""
        return self.received.get(name)

    def __repr__(self) -> str:
        return (
            f"<RequestHead {self.method.decode()} {self.target.decode('latin-1')} host={self.host}>"
        )


class ResponseHead:
    """A response from an upstream, or one the gateway makes itself."""

    __slots__ = (
        "chunked",
        "content_length",
        "headers",
        "keep_alive",
        "reason",
        "status",
        "upgrade",
    )

    def __init__(self, status: int, headers: Headers, reason: bytes = b"") -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self.upgrade: bytes | None = None

    def get(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status}>"


# Statuses whose responses never carry a body (RFC 9110 §6.4.1).
NO_BODY_STATUSES: Final = frozenset({204, 304})
