"""Validation of Host / authority values and request paths (RFC 9112 §3.2, RFC 3986).

``split_authority`` accepts ``reg-name``, IPv4 and bracketed IPv6 hosts with an optional
port, and rejects anything else (control characters, ``@``, stray slashes, two ports) so
a malformed Host is a 400, never a surprise route.

``normalize_path`` produces the one canonical path that is routed, authorised and
forwarded (reliability.md b3): percent-encoded unreserved characters are decoded,
remaining escapes are upper-cased, dot segments are removed (RFC 3986 §5.2.4) and
repeated slashes are merged. ``%2F`` and ``%5C`` stay encoded, so an encoded slash can
never create a new path segment. Paths that escape above the root are rejected.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

_AUTHORITY: Final = re.compile(
    rb"(?:(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})?)|(?P<v6>\[[0-9A-Fa-f:.]{2,45}\]))"
    rb"(?::(?P<port>[0-9]{1,5}))?"
)


class InvalidTarget(ValueError):
    """A Host or request-target that must be refused with 400."""


def split_authority(value: bytes) -> tuple[str, int | None]:
    """Return the lowercase host (brackets kept for IPv6) and port of an authority."""
    m = _AUTHORITY.fullmatch(value)
    if m is None:
        raise InvalidTarget("invalid host")
    name = m.group("name")
    if name is not None:
        if name.find(b"..") >= 0:
            raise InvalidTarget("invalid host")
        host = name.rstrip(b".").decode("ascii").lower()
    else:
        literal = m.group("v6")
        try:
            ipaddress.IPv6Address(literal[1:-1].decode("ascii"))
        except ValueError:
            raise InvalidTarget("invalid IPv6 host") from None
        host = literal.decode("ascii").lower()
    port_bytes = m.group("port")
    port = int(port_bytes) if port_bytes is not None else None
    if port is not None and port > 65535:
        raise InvalidTarget("invalid port")
    return host, port


_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


def path_needs_normalizing(path: bytes) -> bool:
    """Cheap pre-check; most real paths skip normalisation entirely.

    Done on a ``str`` copy: ``bytes in bytes`` first tries the needle as an integer and
    pays for a swallowed TypeError, several times slower than the whole ``str`` route.
    """
    s = path.decode("latin-1")
    return "%" in s or "/." in s or "//" in s or "\\" in s


def normalize_path(path: bytes) -> bytes:
    """Canonical form of an origin-form path (no query). Raises ``InvalidTarget``."""
    if not path.startswith(b"/"):
        raise InvalidTarget("path must start with '/'")
    if 0x5C in path:  # a backslash
        # Some upstreams treat '\\' as '/': it could reach a path the gateway never routed.
        raise InvalidTarget("backslash in path")
    if 0x25 in path:  # "%"
        path = _normalize_escapes(path)
    segments = path.split(b"/")[1:]
    out: list[bytes] = []
    for seg in segments:
        if seg == b"" or seg == b".":
            continue  # repeated slashes merge; '.' is the current segment
        if seg == b"..":
            if not out:
                raise InvalidTarget("path escapes above the root")
            out.pop()
            continue
        out.append(seg)
    result = b"/" + b"/".join(out)
    # A path ending in '/', '/.' or '/..' names a directory: keep its trailing slash.
    if out and segments[-1] in (b"", b".", b".."):
        result += b"/"
    return result


def _normalize_escapes(path: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == 0x25:  # '%'
            if i + 2 >= n:
                raise InvalidTarget("truncated percent-escape in path")
            h1, h2 = path[i + 1], path[i + 2]
            if h1 not in _HEX or h2 not in _HEX:
                raise InvalidTarget("invalid percent-escape in path")
            byte = int(path[i + 1 : i + 3], 16)
            if byte == 0:
                raise InvalidTarget("NUL in path")
            if byte in _UNRESERVED:
                out.append(byte)
            else:
                out += b"%" + path[i + 1 : i + 3].upper()
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)
