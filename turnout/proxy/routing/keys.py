"""Find a request's sandbox routing key (see ``turnout.core.routing_keys`` for where keys
travel and in which order they are looked for).

This runs on every request while any Sandbox or RouteGroup exists, so it is shaped for
the common case of a request without a key: a handful of dict lookups on the received
headers and a substring test before any list is split. A value that is not a
well-formed key is ignored, never an error: keys come from clients.
"""

from __future__ import annotations

from typing import Final

from turnout.core import routing_keys as spec
from turnout.proxy.protocols.heads import RequestHead

FROM_HEADER: Final = 1
FROM_BAGGAGE: Final = 2
FROM_TRACESTATE: Final = 3
FROM_ITEM_HEADER: Final = 4
FROM_COOKIE: Final = 5
FROM_QUERY: Final = 6

_HEADER: Final = spec.HEADER.encode()
_MEMBERS: Final = tuple(k.encode() for k in spec.BAGGAGE_KEYS)
_ITEM_HEADERS: Final = tuple(h.encode() for h in spec.ITEM_HEADERS)
_COOKIE: Final = spec.COOKIE.encode()
_QUERY: Final = spec.QUERY.encode()
_ALLOWED: Final = bytes(spec.ALLOWED)
_MARK: Final = b"routing-key"  # in every member name: one substring test skips the rest


def well_formed(value: bytes) -> bool:
    return 0 < len(value) <= spec.MAX_LENGTH and not value.translate(None, _ALLOWED)


def _member(listing: bytes, name: bytes) -> bytes | None:
    """The value of member ``name`` in a W3C baggage / tracestate list, or None."""
    for item in listing.split(b","):
        k, sep, v = item.partition(b"=")
        if sep and k.strip() == name:
            v = v.partition(b";")[0].strip()  # baggage member properties follow ';'
            return v if well_formed(v) else None
    return None


def _listed(value: bytes | None) -> bytes | None:
    if value is None or _MARK not in value:
        return None
    for name in _MEMBERS:
        found = _member(value, name)
        if found is not None:
            return found
    return None


def _cookie(value: bytes) -> bytes | None:
    for pair in value.split(b";"):
        k, sep, v = pair.partition(b"=")
        if sep and k.strip() == _COOKIE:
            v = v.strip()
            return v if well_formed(v) else None
    return None


def _query(query: bytes) -> bytes | None:
    for pair in query.split(b"&"):
        k, _, v = pair.partition(b"=")
        if k == _QUERY:
            return v if well_formed(v) else None
    return None


def find_key(head: RequestHead) -> tuple[bytes, int]:
    """``(key, FROM_*)``, or ``(b"", 0)`` when the request carries no well-formed key."""
    received = head.received
    value = received.get(_HEADER)
    if value is not None and well_formed(value.strip()):
        return value.strip(), FROM_HEADER
    found = _listed(received.get(b"baggage"))
    if found is not None:
        return found, FROM_BAGGAGE
    found = _listed(received.get(b"tracestate"))
    if found is not None:
        return found, FROM_TRACESTATE
    for name in _ITEM_HEADERS:
        value = received.get(name)
        if value is not None and well_formed(value.strip()):
            return value.strip(), FROM_ITEM_HEADER
    value = received.get(b"cookie")
    if value is not None and _COOKIE in value:
        found = _cookie(value)
        if found is not None:
            return found, FROM_COOKIE
    query = head.query
    if query and _QUERY in query:
        found = _query(query)
        if found is not None:
            return found, FROM_QUERY
    return b"", 0


def preview_cookie(key: bytes) -> bytes:
    """The Set-Cookie value a preview link (``?turnout-routing-key=K``) answers with, so
    the browser's next requests carry the key without the parameter."""
    return b"%s=%s; Path=/; HttpOnly; SameSite=Lax" % (_COOKIE, key)
