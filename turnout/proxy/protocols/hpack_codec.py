"""HPACK (RFC 7541) encoder and decoder, compiled with the hot path; used by both HTTP/2 codecs.

``hpack`` (the pure-Python library ``h2`` ships with) was the largest single cost of an
HTTP/2 request in the profile of ``bench/h2codec.py``: per header it builds a
``HeaderTuple``, slices a ``memoryview``, calls ``log.debug`` and walks its Huffman
state machine in Python. ``Encoder`` and ``Decoder`` here are drop-in replacements for
the two objects ``h2`` keeps on a connection (``conn.encoder``, ``conn.decoder``; the
codecs swap them in right after creating the connection) written as tight typed loops
over ``bytes`` that mypyc turns into C (``core/accel.py: HOT_MODULES``). Uncompiled they
behave the same.

What ``h2`` relies on, kept: ``decode(data, raw=True)`` returns ``(name, value)`` byte
tuples; errors are ``hpack``'s exception classes (``h2`` maps them to connection
errors: ``OversizedHeaderListError`` to ``DenialOfServiceError``, the other
``HPACKError``\\ s to ``PROTOCOL_ERROR``); ``max_header_list_size`` is checked while
decoding, after each field, so an HPACK bomb (CVE-2016-6581) stops at the limit;
``max_allowed_table_size`` bounds the peer's table size updates, which are accepted only
at the start of a block; ``encode(headers)`` returns a block, preceded by the table size
updates owed since ``header_table_size`` was last set (the peer's SETTINGS).

Measured (``bench/h2codec.py --reference``: the server codec alone, an h2load-like GET
and a 100-byte answer per stream, ten streams per read, compiled build, a 2-core machine
shared with seven other busy sessions): 93.1 µs of CPU per request with ``hpack`` and
h2's own field validation, 56.5 µs with this module and ``http2_fields`` (1.65× less).
Uncompiled, 96.5 → 69.1 µs (1.40×). Of the options issue 17 names, this is the one that
installs with the README's commands on a fresh machine (mypyc, as for the rest of the hot
path, pure Python otherwise); a libnghttp2 binding would need ``libnghttp2-dev`` headers
at install and a rewrite of the protections on nghttp2's callbacks, and the one faster
HPACK on PyPI (``fast-hpack`` 0.1.0, a single 2024 release) is not a maintained library.

Hardening beyond ``hpack``: integers are capped (``MAX_INTEGER``), a string longer than
what is left of the block is refused before any copy, a Huffman string with EOS, more
than 7 bits of padding or padding that is not all ones is refused (RFC 7541 §5.2), and
the encoder never adds ``authorization``, ``proxy-authorization``, short ``cookie`` values
or ``set-cookie`` to the dynamic table (the CRIME-style guessing that RFC 7541 §7.1.3
describes), whether or not ``h2``'s outbound normalisation marked them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from hpack.exceptions import (
    HPACKDecodingError,
    InvalidTableIndexError,
    InvalidTableSizeError,
    OversizedHeaderListError,
)
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.struct import HeaderTuple
from hpack.table import HeaderTable

# RFC 7541 §4.2 and h2's initial SETTINGS_HEADER_TABLE_SIZE.
DEFAULT_TABLE_SIZE: Final = 4096
DEFAULT_MAX_HEADER_LIST_SIZE: Final = 1 << 16
# An integer (an index, a length, a table size) above this is refused: no legitimate
# peer needs one, and the cap keeps the arithmetic in machine words.
MAX_INTEGER: Final = 1 << 30
ENTRY_OVERHEAD: Final = 32  # RFC 7541 §4.1
STATIC: Final[tuple[tuple[bytes, bytes], ...]] = tuple(HeaderTable.STATIC_TABLE)
STATIC_LEN: Final = len(STATIC)  # 61
# Never added to the encoder's dynamic table (RFC 7541 §7.1.3); a cookie this short is
# guessable, a longer one is usually a session id not worth probing for.
SENSITIVE: Final = frozenset((b"authorization", b"proxy-authorization", b"set-cookie"))
SHORT_COOKIE: Final = 20


def _static_maps() -> tuple[dict[tuple[bytes, bytes], int], dict[bytes, int]]:
    full: dict[tuple[bytes, bytes], int] = {}
    names: dict[bytes, int] = {}
    for i, entry in enumerate(STATIC):
        full.setdefault(entry, i + 1)
        names.setdefault(entry[0], i + 1)
    return full, names


STATIC_FULL, STATIC_NAMES = _static_maps()


def _huffman_tree() -> list[int]:
    """The decoding tree as one flat list: ``tree[2*node + bit]`` is the next node, or
    ``-1 - symbol`` at a leaf (0 when the code does not exist)."""
    tree = [0, 0]
    for sym in range(257):
        code, length = REQUEST_CODES[sym], REQUEST_CODES_LENGTH[sym]
        node = 0
        for shift in range(length - 1, -1, -1):
            slot = 2 * node + ((code >> shift) & 1)
            if shift == 0:
                tree[slot] = -1 - sym
            else:
                if tree[slot] == 0:
                    tree[slot] = len(tree) // 2
                    tree.extend((0, 0))
                node = tree[slot]
    return tree


HUFFMAN_TREE: Final[list[int]] = _huffman_tree()
HUFFMAN_CODES: Final[list[int]] = list(REQUEST_CODES)
HUFFMAN_LENGTHS: Final[list[int]] = list(REQUEST_CODES_LENGTH)
EOS: Final = 256


def huffman_decode(data: bytes, start: int, end: int) -> bytes:
    out = bytearray()
    tree = HUFFMAN_TREE
    node = 0
    pending = 0  # bits read since the last symbol
    ones = True  # ... and all of them were 1 (only valid padding if so)
    for i in range(start, end):
        byte = data[i]
        for shift in range(7, -1, -1):
            bit = (byte >> shift) & 1
            nxt = tree[2 * node + bit]
            if nxt < 0:
                sym = -1 - nxt
                if sym == EOS:
                    raise HPACKDecodingError("EOS in a Huffman-encoded string")
                out.append(sym)
                node = 0
                pending = 0
                ones = True
            elif nxt == 0:
                raise HPACKDecodingError("invalid Huffman code")
            else:
                node = nxt
                pending += 1
                if not bit:
                    ones = False
    if pending > 7 or not ones:
        raise HPACKDecodingError("invalid Huffman padding")
    return bytes(out)


def huffman_length(data: bytes) -> int:
    """Bytes the Huffman encoding of ``data`` takes."""
    lengths = HUFFMAN_LENGTHS
    bits = 0
    for byte in data:
        bits += lengths[byte]
    return (bits + 7) >> 3


def huffman_encode(data: bytes, out: bytearray) -> None:
    codes = HUFFMAN_CODES
    lengths = HUFFMAN_LENGTHS
    acc = 0
    nbits = 0
    for byte in data:
        acc = (acc << lengths[byte]) | codes[byte]
        nbits += lengths[byte]
        while nbits >= 8:
            nbits -= 8
            out.append((acc >> nbits) & 0xFF)
        acc &= (1 << nbits) - 1  # at most 7 bits stay: no bignum
    if nbits:
        out.append(((acc << (8 - nbits)) | ((1 << (8 - nbits)) - 1)) & 0xFF)


def encode_integer(value: int, prefix: int, first: int, out: bytearray) -> None:
    """RFC 7541 §5.1; ``first`` holds the representation's high bits."""
    limit = (1 << prefix) - 1
    if value < limit:
        out.append(first | value)
        return
    out.append(first | limit)
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


class Decoder:
    """The receiving side's HPACK context (one per connection)."""

    __slots__ = (
        "_entries",
        "_size",
        "_table_max",
        "max_allowed_table_size",
        "max_header_list_size",
    )

    def __init__(self, max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE) -> None:
        self._entries: list[tuple[bytes, bytes]] = []  # oldest first
        self._size = 0
        self._table_max = DEFAULT_TABLE_SIZE
        self.max_header_list_size = max_header_list_size
        # What we advertised (and the peer acknowledged): table size updates above it
        # are refused.
        self.max_allowed_table_size = DEFAULT_TABLE_SIZE

    @property
    def header_table_size(self) -> int:
        return self._table_max

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._table_max = value
        self._evict()

    def _evict(self) -> None:
        entries = self._entries
        drop = 0
        size = self._size
        while size > self._table_max:
            name, value = entries[drop]
            size -= len(name) + len(value) + ENTRY_OVERHEAD
            drop += 1
        if drop:
            del entries[:drop]
            self._size = size

    def _lookup(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= STATIC_LEN:
            return STATIC[index - 1]
        dynamic = index - STATIC_LEN
        entries = self._entries
        if index == 0 or dynamic > len(entries):
            raise InvalidTableIndexError(f"invalid table index {index}")
        return entries[len(entries) - dynamic]

    def decode(self, data: bytes, raw: bool = True) -> list[tuple[bytes, bytes]]:
        """The header list of one block, as ``(name, value)`` bytes (``raw`` is accepted
        for ``hpack``'s signature; the result is always bytes)."""
        headers: list[tuple[bytes, bytes]] = []
        end = len(data)
        pos = 0
        inflated = 0
        limit = self.max_header_list_size
        while pos < end:
            byte = data[pos]
            if byte & 0x80:  # indexed field
                index, pos = self._integer(data, pos, 7)
                field = self._lookup(index)
            elif byte & 0x40:  # literal, incremental indexing
                field, pos = self._literal(data, pos, 6)
                self._add(field)
            elif byte & 0x20:  # dynamic table size update
                if headers:
                    raise HPACKDecodingError("table size update not at the start of the block")
                size, pos = self._integer(data, pos, 5)
                if size > self.max_allowed_table_size:
                    raise InvalidTableSizeError("table size update above our setting")
                self.header_table_size = size
                continue
            else:  # literal, without indexing (0000) or never indexed (0001)
                field, pos = self._literal(data, pos, 4)
            headers.append(field)
            inflated += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if inflated > limit:
                raise OversizedHeaderListError(f"a header list larger than {limit} bytes")
        if self._table_max > self.max_allowed_table_size:
            # We lowered the setting and the peer did not shrink its table.
            raise InvalidTableSizeError("the table was not shrunk to our setting")
        return headers

    def _integer(self, data: bytes, pos: int, prefix: int) -> tuple[int, int]:
        mask = (1 << prefix) - 1
        value = data[pos] & mask
        pos += 1
        if value < mask:
            return value, pos
        shift = 0
        end = len(data)
        while True:
            if pos >= end:
                raise HPACKDecodingError("truncated integer")
            byte = data[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            if value > MAX_INTEGER:
                raise HPACKDecodingError("integer too large")
            if not byte & 0x80:
                return value, pos
            shift += 7

    def _string(self, data: bytes, pos: int) -> tuple[bytes, int]:
        if pos >= len(data):
            raise HPACKDecodingError("truncated string")
        huffman = data[pos] & 0x80
        length, pos = self._integer(data, pos, 7)
        end = pos + length
        if end > len(data):
            raise HPACKDecodingError("string longer than the block")
        if huffman:
            return huffman_decode(data, pos, end), end
        return data[pos:end], end

    def _literal(self, data: bytes, pos: int, prefix: int) -> tuple[tuple[bytes, bytes], int]:
        index, pos = self._integer(data, pos, prefix)
        if index:
            name = self._lookup(index)[0]
        else:
            name, pos = self._string(data, pos)
        value, pos = self._string(data, pos)
        return (name, value), pos

    def _add(self, field: tuple[bytes, bytes]) -> None:
        size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        if size > self._table_max:
            # RFC 7541 §4.4: an entry larger than the table empties it.
            self._entries.clear()
            self._size = 0
            return
        self._entries.append(field)
        self._size += size
        self._evict()


class Encoder:
    """The sending side's HPACK context (one per connection)."""

    __slots__ = ("_dropped", "_entries", "_full", "_names", "_pending", "_size", "_table_max")

    def __init__(self) -> None:
        # Entries oldest first; ``_dropped`` counts those evicted, so entry ``n`` (ever
        # added) is at index STATIC_LEN + len(entries) - (n - dropped) in the table.
        self._entries: list[tuple[bytes, bytes]] = []
        self._dropped = 0
        self._full: dict[tuple[bytes, bytes], int] = {}  # field -> newest entry number
        self._names: dict[bytes, int] = {}  # name -> newest entry number
        self._size = 0
        self._table_max = DEFAULT_TABLE_SIZE
        self._pending: list[int] = []  # table size updates owed to the peer

    @property
    def header_table_size(self) -> int:
        return self._table_max

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        if value == self._table_max and not self._pending:
            return
        # RFC 7541 §4.2: signal the smallest size reached since the last block, then
        # the final one.
        low = min(self._pending[0], value) if self._pending else value
        self._pending = [low] if low == value else [low, value]
        self._table_max = value
        self._evict()

    def encode(self, headers: Iterable[Sequence[bytes]], huffman: bool = True) -> bytes:
        """The block for ``headers`` (bytes pairs; a ``NeverIndexedHeaderTuple`` or a
        sensitive name is sent never-indexed)."""
        out = bytearray()
        if self._pending:
            for size in self._pending:
                encode_integer(size, 5, 0x20, out)
            self._pending = []
        for header in headers:
            name = header[0]
            value = header[1]
            sensitive = name in SENSITIVE or (name == b"cookie" and len(value) < SHORT_COOKIE)
            if isinstance(header, HeaderTuple) and not header.indexable:
                sensitive = True
            self._field(name, value, sensitive, huffman, out)
        return bytes(out)

    def _field(
        self, name: bytes, value: bytes, sensitive: bool, huffman: bool, out: bytearray
    ) -> None:
        field = (name, value)
        index = STATIC_FULL.get(field, 0)
        if not index:
            number = self._full.get(field, -1)
            if number >= 0:
                index = self._index(number)
        if index and not sensitive:
            encode_integer(index, 7, 0x80, out)
            return
        name_index = STATIC_NAMES.get(name, 0)
        if not name_index:
            number = self._names.get(name, -1)
            if number >= 0:
                name_index = self._index(number)
        size = len(name) + len(value) + ENTRY_OVERHEAD
        if sensitive:
            encode_integer(name_index, 4, 0x10, out)  # never indexed
        elif size > self._table_max // 2:
            encode_integer(name_index, 4, 0x00, out)  # without indexing: would flush the table
        else:
            encode_integer(name_index, 6, 0x40, out)
            self._add(field, size)
        if not name_index:
            self._string(name, huffman, out)
        self._string(value, huffman, out)

    def _index(self, number: int) -> int:
        return STATIC_LEN + len(self._entries) - (number - self._dropped)

    @staticmethod
    def _string(data: bytes, huffman: bool, out: bytearray) -> None:
        if huffman:
            hlen = huffman_length(data)
            if hlen < len(data):
                encode_integer(hlen, 7, 0x80, out)
                huffman_encode(data, out)
                return
        encode_integer(len(data), 7, 0x00, out)
        out += data

    def _add(self, field: tuple[bytes, bytes], size: int) -> None:
        number = self._dropped + len(self._entries)
        self._entries.append(field)
        self._full[field] = number
        self._names[field[0]] = number
        self._size += size
        self._evict()

    def _evict(self) -> None:
        entries = self._entries
        drop = 0
        size = self._size
        while size > self._table_max:
            field = entries[drop]
            size -= len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            number = self._dropped + drop
            if self._full.get(field) == number:
                del self._full[field]
            if self._names.get(field[0]) == number:
                del self._names[field[0]]
            drop += 1
        if drop:
            del entries[:drop]
            self._dropped += drop
            self._size = size
