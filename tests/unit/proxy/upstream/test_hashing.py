"""The stable 64-bit hash behind consistent hashing: fixed values, range, mixing."""

from __future__ import annotations

import os
import subprocess
import sys
from hashlib import blake2b
from pathlib import Path

import pytest

from turnout.proxy.upstream.hashing import NO_HASH, hash_bytes, hash_str

ROOT = Path(__file__).resolve().parents[4]


def test_known_values() -> None:
    # Pinned: a change here remaps every consistent-hash key (and Maglev table) on upgrade.
    assert hash_bytes(b"") == 0xB4B2797457A0A6E4
    assert hash_bytes(b"user-42") == 0xA6EFE67B4DCAA06F
    assert hash_bytes(b"10.0.0.1:80") == 0x6B80BC2D14BABA10
    # BLAKE2b with an 8-byte digest, little-endian
    assert hash_bytes(b"x") == int.from_bytes(blake2b(b"x", digest_size=8).digest(), "little")


def test_hash_str_is_the_utf8_hash() -> None:
    assert hash_str("ünïcode") == hash_bytes("ünïcode".encode())
    assert hash_str("10.0.0.1:80") == hash_bytes(b"10.0.0.1:80")


def test_range_is_64_bits_and_never_the_no_hash_marker() -> None:
    values = [hash_bytes(i.to_bytes(4, "little")) for i in range(5000)]

    assert all(0 <= v < 2**64 for v in values)
    assert NO_HASH not in values
    assert len(set(values)) == len(values)
    assert max(values).bit_length() == 64  # the top bits are used too


def test_the_same_in_another_process() -> None:
    code = "from turnout.proxy.upstream.hashing import hash_bytes; print(hash_bytes(b'k1'))"
    out = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=ROOT,
            check=True,
            timeout=60,
        ).stdout.strip()
        for seed in ("1", "2")
    }

    assert out == {str(hash_bytes(b"k1"))}


def test_one_flipped_input_bit_flips_about_half_the_output_bits() -> None:
    flips = []
    for i in range(200):
        data = bytearray(f"client-{i}".encode())
        base = hash_bytes(bytes(data))
        for bit in range(8 * len(data)):
            data[bit // 8] ^= 1 << (bit % 8)
            flips.append((base ^ hash_bytes(bytes(data))).bit_count())
            data[bit // 8] ^= 1 << (bit % 8)

    mean = sum(flips) / len(flips)
    assert mean == pytest.approx(32, abs=0.3)
    assert min(flips) > 8


@pytest.mark.parametrize("modulus", [7, 65537, 1 << 16])
def test_residues_are_uniform(modulus: int) -> None:
    # what Maglev's lookup (hash % table size) relies on; similar keys must not cluster
    n = 70_000
    buckets = min(modulus, 64)
    counts = [0] * buckets
    for i in range(n):
        counts[hash_bytes(b"10.0.%d.%d" % (i // 256, i % 256)) % modulus % buckets] += 1
    exp = n / buckets
    stat = sum((c - exp) ** 2 / exp for c in counts)
    # chi-square critical values at p = 0.001: df 6 → 22.458, df 63 → 103.442
    assert stat < (22.458 if buckets == 7 else 103.442)
