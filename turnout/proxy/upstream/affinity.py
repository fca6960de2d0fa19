"""Request affinity: the inputs of consistent hashing and the sticky-session cookie.

Consistent hashing (``loadBalancer.consistentHash``) hashes one request attribute — the
client address, a header, a cookie or a query parameter — with ``hashing.hash_bytes`` so
every worker and replica maps a key to the same endpoint. A request without the
attribute gets ``-1`` (the balancer then picks as if not hashing), except that a hash
cookie with a ``ttl`` is created by the gateway: a random value is hashed now and set
on the response, so the client's next requests stick.

Sticky sessions (``sessionPersistence``) name the endpoint in a cookie the gateway sets:
the value is a 16-hex-digit token derived from the endpoint address (not the address
itself, which would leak the upstream topology). A request whose cookie names an
available endpoint goes there; otherwise the balancer picks and the response sets the
cookie. The Cookie header is scanned by hand because ``http.cookies`` rejects whole
headers for one malformed pair and allocates a dict per request.
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.upstream.hashing import hash_bytes

NO_KEY: Final = -1


def endpoint_token(key: str) -> bytes:
    return (
        hashlib.blake2b(key.encode(), digest_size=8, person=b"turnout-sticky").hexdigest().encode()
    )


def cookie_value(head: RequestHead, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in the request's Cookie header(s), or None."""
    for hname, value in head.headers:
        if hname != b"cookie":
            continue
        for pair in value.split(b";"):
            k, sep, v = pair.partition(b"=")
            if sep and k.strip() == name:
                v = v.strip()
                if len(v) >= 2 and v[0] == 0x22 and v[-1] == 0x22:  # a quoted value
                    v = v[1:-1]
                return v
    return None


def query_value(query: bytes, name: bytes) -> bytes | None:
    if not query:
        return None
    for pair in query.split(b"&"):
        k, _, v = pair.partition(b"=")
        if k == name:
            return v
    return None


def new_cookie_value() -> bytes:
    return os.urandom(12).hex().encode()


def set_cookie(name: bytes, value: bytes, max_age: int) -> bytes:
    """A Set-Cookie value; ``max_age`` < 0 makes a session cookie."""
    if max_age >= 0:
        return b"%s=%s; Path=/; Max-Age=%d; HttpOnly" % (name, value, max_age)
    return b"%s=%s; Path=/; HttpOnly" % (name, value)


def key_of(data: bytes | None) -> int:
    return hash_bytes(data) if data is not None else NO_KEY
