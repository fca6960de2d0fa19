"""Sans-IO reader of a TLS ClientHello: the server name (SNI) without terminating TLS.

A TLS passthrough listener must choose a backend before any byte goes upstream, and
the only routing input TLS offers in the clear is the ``server_name`` extension of the
client's first handshake message. ``ClientHelloParser`` is fed the bytes as they arrive
and answers one of:

- ``NEED_MORE``: the ClientHello is not complete yet (feed more);
- ``FOUND``: ``server_name`` holds the lowercase host name the client asked for;
- ``NO_SNI``: a well-formed ClientHello without a host name;
- ``NOT_TLS``: the first bytes are not a TLS handshake record (plain text, SSLv2, ...);
- ``MALFORMED``: a TLS record stream whose ClientHello does not parse;
- ``TOO_LARGE``: the ClientHello would exceed the size cap (16 KiB by default).

How it works: records (5-byte header: type 22, version 3.x, length <= 2^14) are peeled
off as they complete and their fragments appended to a handshake buffer, so a
ClientHello split across several records, or across reads at any byte boundary, is
reassembled; each byte is looked at a bounded number of times (once by the record
layer, once by the final parse), so hostile input costs linear work and memory capped
by ``limit``. The raw bytes stay in ``buffered``: the transport forwards them upstream
unchanged, because the backend terminates TLS and must see the very same handshake.

The parser never raises on input: every malformed byte string maps to a status. The
only exception is ``ClientHelloError`` for misuse (feeding after a final answer).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

RECORD_HEADER: Final = 5
MAX_RECORD: Final = 1 << 14  # TLSPlaintext.length must not exceed 2^14 (RFC 8446 5.1)
MAX_CLIENT_HELLO: Final = 16 * 1024  # handshake message cap (header included)
MAX_RECORDS: Final = 64  # a ClientHello in more, tiny records is an attack, not a client

_HANDSHAKE: Final = 22
_CLIENT_HELLO: Final = 1
_EXT_SERVER_NAME: Final = 0
_HOST_NAME: Final = 0
_HOST_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-._")

# A fatal unrecognized_name(112) alert record, sent before closing a connection whose
# server name no route serves (RFC 6066 section 3), so clients report a clear reason.
UNRECOGNIZED_NAME_ALERT: Final = b"\x15\x03\x03\x00\x02\x02\x70"


class HelloStatus(IntEnum):
    NEED_MORE = 0
    FOUND = 1
    NO_SNI = 2
    NOT_TLS = 3
    MALFORMED = 4
    TOO_LARGE = 5


class ClientHelloError(Exception):
    """Misuse of the parser (never raised for bad input: that is a status)."""


class ClientHelloParser:
    """Incremental ClientHello reader; see the module docstring."""

    __slots__ = ("_handshake", "_pos", "_records", "buffered", "limit", "server_name", "status")

    def __init__(self, limit: int = MAX_CLIENT_HELLO) -> None:
        self.limit = limit
        self.buffered = bytearray()  # every byte received, to forward upstream as is
        self.server_name: str | None = None
        self.status = HelloStatus.NEED_MORE
        self._handshake = bytearray()  # record fragments, reassembled
        self._pos = 0  # first byte of ``buffered`` not consumed by the record layer
        self._records = 0

    def feed(self, data: bytes) -> HelloStatus:
        if self.status is not HelloStatus.NEED_MORE:
            raise ClientHelloError(f"the ClientHello was already read ({self.status.name})")
        self.buffered += data
        self.status = status = self._advance()
        return status

    def _advance(self) -> HelloStatus:
        raw = self.buffered
        # Answer "not TLS" from the very first bytes: plain-text clients wait for a
        # reply and would otherwise sit out the read timeout.
        if raw and raw[0] != _HANDSHAKE:
            return HelloStatus.NOT_TLS
        if len(raw) >= 2 and raw[1] != 3:
            return HelloStatus.NOT_TLS
        hs = self._handshake
        while len(raw) - self._pos >= RECORD_HEADER:
            pos = self._pos
            if raw[pos] != _HANDSHAKE or raw[pos + 1] != 3:
                return HelloStatus.NOT_TLS if pos == 0 else HelloStatus.MALFORMED
            length = (raw[pos + 3] << 8) | raw[pos + 4]
            if length == 0 or length > MAX_RECORD:
                return HelloStatus.MALFORMED  # empty handshake fragments are forbidden
            if len(raw) - pos - RECORD_HEADER < length:
                break
            self._records += 1
            if self._records > MAX_RECORDS:
                return HelloStatus.TOO_LARGE
            hs += raw[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
            self._pos = pos + RECORD_HEADER + length
            if len(hs) >= 4:
                if hs[0] != _CLIENT_HELLO:
                    return HelloStatus.MALFORMED
                size = 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])
                if size > self.limit:
                    return HelloStatus.TOO_LARGE
                if len(hs) >= size:
                    return self._parse(bytes(hs[4:size]))
        # Refuse an oversize ClientHello as soon as its header shows, even inside a
        # record still arriving, rather than buffering up to the cap first.
        head = hs[:4]
        if len(head) < 4:
            head += raw[self._pos + RECORD_HEADER : self._pos + RECORD_HEADER + 4 - len(head)]
        if len(head) == 4:
            if head[0] != _CLIENT_HELLO:
                return HelloStatus.MALFORMED
            if 4 + ((head[1] << 16) | (head[2] << 8) | head[3]) > self.limit:
                return HelloStatus.TOO_LARGE
        if len(raw) - self._pos + len(hs) > self.limit + RECORD_HEADER:
            return HelloStatus.TOO_LARGE
        return HelloStatus.NEED_MORE

    def _parse(self, body: bytes) -> HelloStatus:
        """The ClientHello body (RFC 8446 4.1.2; TLS 1.0-1.2 share the layout)."""
        end = len(body)
        pos = 2 + 32  # legacy_version, random
        if pos + 1 > end:
            return HelloStatus.MALFORMED
        pos += 1 + body[pos]  # legacy_session_id
        if pos + 2 > end:
            return HelloStatus.MALFORMED
        pos += 2 + ((body[pos] << 8) | body[pos + 1])  # cipher_suites
        if pos + 1 > end:
            return HelloStatus.MALFORMED
        pos += 1 + body[pos]  # legacy_compression_methods
        if pos > end:
            return HelloStatus.MALFORMED
        if pos == end:
            return HelloStatus.NO_SNI  # no extensions at all (old clients)
        if pos + 2 > end:
            return HelloStatus.MALFORMED
        ext_end = pos + 2 + ((body[pos] << 8) | body[pos + 1])
        if ext_end > end:
            return HelloStatus.MALFORMED
        pos += 2
        while pos + 4 <= ext_end:
            ext_type = (body[pos] << 8) | body[pos + 1]
            ext_len = (body[pos + 2] << 8) | body[pos + 3]
            pos += 4
            if pos + ext_len > ext_end:
                return HelloStatus.MALFORMED
            if ext_type == _EXT_SERVER_NAME:
                return self._server_name(body[pos : pos + ext_len])
            pos += ext_len
        return HelloStatus.NO_SNI if pos == ext_end else HelloStatus.MALFORMED

    def _server_name(self, ext: bytes) -> HelloStatus:
        if len(ext) < 2:
            return HelloStatus.MALFORMED
        end = 2 + ((ext[0] << 8) | ext[1])
        if end > len(ext):
            return HelloStatus.MALFORMED
        pos = 2
        while pos + 3 <= end:
            name_type = ext[pos]
            size = (ext[pos + 1] << 8) | ext[pos + 2]
            pos += 3
            if pos + size > end:
                return HelloStatus.MALFORMED
            if name_type == _HOST_NAME:
                name = ext[pos : pos + size].lower()
                # RFC 6066: an ASCII DNS name without a trailing dot; anything else would
                # only ever match no route, so say so instead of guessing.
                if not 0 < size <= 255 or not _HOST_CHARS.issuperset(name):
                    return HelloStatus.MALFORMED
                self.server_name = name.decode("ascii")
                return HelloStatus.FOUND
            pos += size
        return HelloStatus.NO_SNI
