"""The HPACK codec against the reference ``hpack`` library, both ways, plus the refusals.

Random header lists (seeded) go through our encoder into ``hpack``'s decoder and through
``hpack``'s encoder into ours, over many blocks on one context so the dynamic tables,
evictions and table size updates must stay in step.
"""

from __future__ import annotations

import random

import hpack
import pytest
from hpack.exceptions import (
    HPACKDecodingError,
    InvalidTableIndexError,
    InvalidTableSizeError,
    OversizedHeaderListError,
)

from turnout.proxy.protocols.hpack_codec import (
    Decoder,
    Encoder,
    huffman_decode,
    huffman_encode,
)

NAMES = [b":status", b"content-type", b"x-a", b"x-long-name-" * 3, b"date", b"cookie"]


def header_lists(seed: int, blocks: int) -> list[list[tuple[bytes, bytes]]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(blocks):
        block = []
        for _ in range(rnd.randint(0, 12)):
            name = rnd.choice(NAMES)
            value = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 5, 30, 300])))
            if rnd.random() < 0.5:
                value = bytes(rnd.choice(b"abc/=0123 ") for _ in range(len(value)))
            block.append((name, value))
        out.append(block)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_ours_to_hpack(seed: int) -> None:
    ours, ref = Encoder(), hpack.Decoder()
    for i, block in enumerate(header_lists(seed, 200)):
        if i == 50:
            ours.header_table_size = 100  # the peer shrank its table...
            ref.header_table_size = 4096
        if i == 51:
            ours.header_table_size = 4096  # ... then grew it again
        assert [tuple(h) for h in ref.decode(ours.encode(block), raw=True)] == block


@pytest.mark.parametrize("seed", range(5))
def test_hpack_to_ours(seed: int) -> None:
    ref, ours = hpack.Encoder(), Decoder()
    for i, block in enumerate(header_lists(seed, 200)):
        if i == 50:
            ref.header_table_size = 0
        if i == 80:
            ref.header_table_size = 4096
        assert ours.decode(ref.encode(block)) == block
        assert ours.header_table_size == ref.header_table_size


def test_huffman_round_trip_all_bytes() -> None:
    data = bytes(range(256)) * 3
    out = bytearray()
    huffman_encode(data, out)
    assert huffman_decode(bytes(out), 0, len(out)) == data
    assert bytes(out) == hpack.huffman.HuffmanEncoder(
        hpack.huffman_constants.REQUEST_CODES, hpack.huffman_constants.REQUEST_CODES_LENGTH
    ).encode(data)


def test_sensitive_fields_are_never_indexed() -> None:
    enc, dec = Encoder(), hpack.Decoder()
    block = [(b"authorization", b"Bearer x"), (b"cookie", b"a=1"), (b"set-cookie", b"s=" * 40)]
    for _ in range(2):
        decoded = dec.decode(enc.encode(block), raw=True)
        assert [type(h).__name__ for h in decoded] == ["NeverIndexedHeaderTuple"] * 3
    assert dec.header_table.dynamic_entries == type(dec.header_table.dynamic_entries)()


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (b"\x80", InvalidTableIndexError),  # index 0
        (b"\xff\x00", InvalidTableIndexError),  # beyond the tables
        (b"\xff\xff\xff\xff\xff\xff\x01", HPACKDecodingError),  # integer overflow
        (b"\xff", HPACKDecodingError),  # truncated integer
        (b"\x40\x05ab", HPACKDecodingError),  # string beyond the block
        (b"\x40\x81\xfe\x00", HPACKDecodingError),  # invalid Huffman code / EOS
        (b"\x40\x81\x00\x00", HPACKDecodingError),  # padding not all ones
        (b"\x40\x82\xff\xff\x00", HPACKDecodingError),  # more than 7 bits of padding
        (b"\x82\x3f\xe1\x1f", HPACKDecodingError),  # size update after a field
        (b"\x3f\xe2\x1f", InvalidTableSizeError),  # size update above our setting
    ],
)
def test_refusals(block: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        Decoder().decode(block)


def test_header_list_limit_stops_a_bomb_while_decoding() -> None:
    dec = Decoder(max_header_list_size=1000)
    enc = hpack.Encoder()
    first = enc.encode([(b"x-bomb", b"v" * 900)])
    dec.decode(first)
    # One indexed byte per field: a tiny block that would inflate to megabytes.
    with pytest.raises(OversizedHeaderListError):
        dec.decode(b"\xbe" * 10_000)


def test_shrunk_setting_not_honoured_is_refused() -> None:
    dec = Decoder()
    dec.max_allowed_table_size = 100  # we lowered SETTINGS_HEADER_TABLE_SIZE
    with pytest.raises(InvalidTableSizeError):
        dec.decode(b"\x82")
    dec2 = Decoder()
    dec2.max_allowed_table_size = 100
    assert dec2.decode(b"\x3f\x45\x82") == [(b":method", b"GET")]  # update to 100 first
