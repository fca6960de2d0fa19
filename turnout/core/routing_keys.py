"""Where a sandbox routing key travels in a request, shared by the gateway and the
propagation kit so both read and write the same places.

A routing key selects a ``Sandbox`` or ``RouteGroup``. The gateway looks for it, in this
order: the ``x-turnout-routing-key`` header; W3C ``baggage`` members
``turnout-routing-key`` and ``sd-routing-key`` (the name Signadot's libraries use, so
services instrumented for it work unchanged); the same members in ``tracestate``;
OpenTracing ``ot-baggage-*`` and Jaeger ``uberctx-*`` headers; then the cookie and the
query parameter a preview link sets. The first non-empty, well-formed value wins.
"""

from __future__ import annotations

from typing import Final

# The baggage / tracestate member names, ours first.
BAGGAGE_KEYS: Final = ("turnout-routing-key", "sd-routing-key")
HEADER: Final = "x-turnout-routing-key"
# OpenTracing and Jaeger carry each baggage item in its own header.
ITEM_HEADERS: Final = tuple(
    prefix + key for key in BAGGAGE_KEYS for prefix in ("ot-baggage-", "uberctx-")
)
# A preview link ``?turnout-routing-key=K`` sets this cookie so a browser keeps the key.
COOKIE: Final = "turnout-routing-key"
QUERY: Final = "turnout-routing-key"

# Keys are short tokens: letters, digits, '-', '_' and '.', at most 63 characters
# (they are written into headers and cookies unescaped).
MAX_LENGTH: Final = 63
ALLOWED: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def valid_key(value: str) -> bool:
    """Whether ``value`` may be a routing key."""
    return 0 < len(value) <= MAX_LENGTH and all(ord(c) < 128 and ord(c) in ALLOWED for c in value)
