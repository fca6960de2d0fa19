"""Reading credentials out of a request: a header (after an optional scheme prefix), a
cookie, or a query parameter.

A credential found in the query string is *removed* from the request target: the
upstream does not need it, and the target is what the access log and the routing-key
history record, so a key or token never lands in a log line.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from turnout.proxy.protocols.heads import RequestHead


def header_credential(head: RequestHead, name: bytes, prefix: bytes = b"") -> bytes | None:
    """The value of header ``name`` after ``prefix`` (compared case-insensitively, as
    auth schemes are), stripped; None when absent, empty or with another prefix."""
    value = head.received.get(name)
    if not value:
        return None
    if prefix:
        if value[: len(prefix)].lower() != prefix:
            return None
        value = value[len(prefix) :]
    value = value.strip()
    return value or None


def cookie_credential(head: RequestHead, name: bytes) -> bytes | None:
    cookies = head.received.get(b"cookie")
    if not cookies:
        return None
    for part in cookies.replace(b",", b";").split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == name:
            value = value.strip().strip(b'"')
            return value or None
    return None


def take_query_credential(head: RequestHead, name: bytes) -> bytes | None:
    """The (percent-decoded) value of query parameter ``name``, removing every
    occurrence of the parameter from the request's query."""
    query = head.query
    if not query or (name not in query and b"%" not in query):
        return None
    found: bytes | None = None
    kept: list[bytes] = []
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name:
            if found is None:
                found = unquote_to_bytes(value.replace(b"+", b" "))
            continue
        kept.append(part)
    if found is None:
        return None
    head.query = b"&".join(kept)
    return found or None
