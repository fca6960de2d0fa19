"""W3C Baggage and Trace Context ``tracestate`` lists, parsed and formatted.

Baggage (https://www.w3.org/TR/baggage/) is one comma-separated list of members::

    baggage: turnout-routing-key=k1, user=Ada%20L;ttl=60, flag=1;sampled

Each member is ``key=value`` followed by optional ``;``-separated properties
(``key=value`` or a bare ``key``); keys are RFC 7230 tokens, values are made of
"baggage octets" (printable ASCII but no space, ``"``, ``,``, ``;`` or ``\\``), and any
other character travels percent-encoded as UTF-8. Space and tab may surround every
delimiter.

Everything here is pure and stdlib-only, and built for input from strangers: parsing
never raises, drops members it cannot read instead of rejecting the whole list, and
keeps at most :data:`MAX_MEMBERS` members in at most :data:`MAX_BYTES` bytes (the limits
the specification asks a platform to propagate). A member that does not fit is dropped
whole, never cut, as the specification requires. Formatting applies the same limits,
so what this module writes another platform will accept.

:func:`routing_key_in` reads a routing key out of a baggage or tracestate list exactly
as the gateway does (``turnout.proxy.routing.keys``), so a service and the gateway in
front of it never disagree about a request's key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

from turnout.core.routing_keys import BAGGAGE_KEYS, valid_key

MAX_MEMBERS: Final = 180
MAX_BYTES: Final = 8192
# A tracestate list holds at most 32 members (W3C Trace Context, section 3.3.1.1).
MAX_TRACESTATE_MEMBERS: Final = 32
# Input past this many characters is not even looked at: a conforming list is at most
# MAX_BYTES long, and splitting a multi-megabyte header of empty members would cost
# time for nothing.
MAX_SCAN: Final = 8 * MAX_BYTES

_OWS: Final = " \t"
# What ``bytes.strip()`` removes, which is what the gateway strips around keys and values
# (``str.strip()`` would also remove non-ASCII spaces such as U+00A0).
ASCII_WHITESPACE: Final = " \t\n\r\x0b\x0c"
_ALPHANUMERIC: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# RFC 7230 section 3.2.6 tchar.
_TOKEN: Final = frozenset("!#$%&'*+-.^_`|~" + _ALPHANUMERIC)
# baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
_OCTETS: Final = frozenset(chr(c) for c in range(0x21, 0x7F) if chr(c) not in {'"', ",", ";", "\\"})
# What ``quote`` may leave as it is: every baggage octet except '%', which must be
# encoded so that decoding gives back exactly the original text.
_SAFE: Final = "".join(sorted(_OCTETS - {"%"}))
# tracestate keys: lowercase letters, digits and _-*/ with one optional '@' (tenant).
_TS_KEY: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-*/@")
# tracestate values: printable ASCII but ',' and '='; spaces only inside.
_TS_VALUE: Final = frozenset(chr(c) for c in range(0x20, 0x7F) if chr(c) not in {",", "="})


@dataclass(frozen=True, slots=True)
class Member:
    """One baggage list member: ``value`` is decoded text; ``properties`` are kept as
    written (``"k=v"`` or ``"k"``, spaces removed), since the specification gives them
    no meaning a propagator needs to understand."""

    key: str
    value: str
    properties: tuple[str, ...] = ()

    def encoded(self) -> str:
        """The member as it appears in a ``baggage`` header."""
        text = f"{self.key}={encode_value(self.value)}"
        if self.properties:
            text += ";" + ";".join(self.properties)
        return text


def encode_value(value: str) -> str:
    """Percent-encode (as UTF-8) every character that is not a baggage octet, and '%'."""
    # errors="replace": a lone surrogate from careless code becomes '?' rather than an
    # exception on an outbound request.
    return quote(value, safe=_SAFE, encoding="utf-8", errors="replace")


def decode_value(value: str) -> str:
    """Undo percent-encoding. A malformed escape stays as written and invalid UTF-8
    becomes U+FFFD: baggage comes from strangers, so decoding never fails."""
    return unquote(value, encoding="utf-8", errors="replace") if "%" in value else value


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN for c in text)


def _is_value(text: str) -> bool:
    return all(c in _OCTETS for c in text)


def _property(text: str) -> str | None:
    """A property normalised to ``k=v`` or ``k``, or None when malformed."""
    key, sep, value = text.partition("=")
    key = key.strip(_OWS)
    if not _is_token(key):
        return None
    if not sep:
        return key
    value = value.strip(_OWS)
    return f"{key}={value}" if _is_value(value) else None


def _member(item: str) -> Member | None:
    head, *props = item.split(";")
    key, sep, raw = head.partition("=")
    key = key.strip(_OWS)
    raw = raw.strip(_OWS)
    if not sep or not _is_token(key) or not _is_value(raw):
        return None
    properties = []
    for prop in props:
        parsed = _property(prop)
        if parsed is None:
            return None  # a member is kept whole or not at all
        properties.append(parsed)
    return Member(key, decode_value(raw), tuple(properties))


def _text(value: str | bytes) -> str:
    # Header bytes are octets, not UTF-8: latin-1 maps each to one character, and any
    # that is not ASCII then fails the octet check instead of failing to decode.
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _window(value: str | bytes) -> str:
    """The part of a list worth reading: at most MAX_SCAN characters, cut after the last
    whole member (a member cut in half could read as a different, valid one)."""
    if len(value) <= MAX_SCAN:
        return _text(value)
    return _text(value[:MAX_SCAN]).rpartition(",")[0]


def _bounded(members: Iterable[Member]) -> tuple[list[Member], list[str]]:
    """The members that fit the limits, in order, with their encoded forms."""
    kept: list[Member] = []
    encoded: list[str] = []
    size = -1  # the first member needs no comma
    for member in members:
        if len(kept) == MAX_MEMBERS:
            break
        text = member.encoded()
        # Encoded text is ASCII, so characters are bytes.
        if size + 1 + len(text) > MAX_BYTES:
            continue  # too big to fit, but a smaller member after it may still fit
        size += 1 + len(text)
        kept.append(member)
        encoded.append(text)
    return kept, encoded


def parse_baggage(value: str | bytes) -> tuple[Member, ...]:
    """The readable members of a ``baggage`` header value, in order, within the limits.

    Several ``baggage`` headers are one list: join their values with ``","`` first.
    Malformed members (bad key, a character that should have been percent-encoded, a
    malformed property) are dropped; duplicate keys are kept as sent.
    """
    text = _window(value)
    members = (_member(item) for item in text.split(","))
    kept, _ = _bounded(m for m in members if m is not None)
    return tuple(kept)


def format_baggage(members: Iterable[Member]) -> str:
    """A ``baggage`` header value for ``members``, within the limits.

    Members whose key is not a token or whose properties are malformed are left out, as
    are members past the limits; so the result is always a valid list (maybe empty).
    """
    checked = (
        m for m in members if _is_token(m.key) and all(_property(p) == p for p in m.properties)
    )
    return ",".join(_bounded(checked)[1])


def parse_tracestate(value: str | bytes) -> tuple[tuple[str, str], ...]:
    """The well-formed ``(key, value)`` members of a ``tracestate`` header value, in
    order, at most 32, first one of each key only. Malformed members are skipped."""
    text = _window(value)
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip(_OWS)
        raw = raw.rstrip(_OWS)
        if (
            not sep
            or not key
            or len(key) > 256
            or key.count("@") > 1
            or not all(c in _TS_KEY for c in key)
            or not raw
            or len(raw) > 256
            or raw[0] == " "
            or not all(c in _TS_VALUE for c in raw)
            or key in seen
        ):
            continue
        seen.add(key)
        members.append((key, raw))
        if len(members) == MAX_TRACESTATE_MEMBERS:
            break
    return tuple(members)


def _first_value(items: list[str], name: str) -> str | None:
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key.strip(ASCII_WHITESPACE) == name:
            return value.partition(";")[0].strip(ASCII_WHITESPACE)
    return None


def routing_key_in(value: str | bytes) -> str | None:
    """The routing key in a baggage or tracestate list, or None.

    Looked for as the gateway does: the first member named ``turnout-routing-key``, then
    the first named ``sd-routing-key``; a value that is not a valid key is passed over.
    The value is compared as written, without percent-decoding, because the gateway does
    not decode it either (a valid key has nothing to encode). Like the other parsers it
    reads only the first MAX_SCAN characters, more than the gateway lets through.
    """
    text = _window(value)
    if "routing-key" not in text:  # the common case: one substring test
        return None
    items = text.split(",")
    for name in BAGGAGE_KEYS:
        found = _first_value(items, name)
        if found is not None and valid_key(found):
            return found
    return None


def with_member(members: Iterable[Member], member: Member) -> tuple[Member, ...]:
    """``members`` with ``member`` first and every other member of its key removed.

    First, so the limits can never drop it from a long list."""
    return (member, *(m for m in members if m.key != member.key))
