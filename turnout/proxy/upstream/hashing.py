"""Stable 64-bit hashing for consistent hashing (the request key and the Maglev table).

Consistent hashing only works if every worker, every replica and every restart maps a
key to the same number, so Python's ``hash()`` (salted per process for ``str`` and
``bytes``) is out. ``hash_bytes`` is BLAKE2b with an 8-byte digest, read as a
little-endian unsigned integer: a cryptographic hash is well mixed in every bit (the
Maglev lookup takes it modulo a prime, and the table build derives offsets and skips
from it), is in the standard library, and at digest size 8 costs about 0.3 µs for short
inputs. A faster non-cryptographic hash (xxHash) is deliberately not picked up when
installed: replicas with and without it would disagree about every key.

``hash_bytes`` returns a value in ``[0, 2**64)``; callers use ``NO_HASH`` (-1) for
"this request has no hash key".
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Final

NO_HASH: Final = -1
HASH_BITS: Final = 64


def hash_bytes(data: bytes) -> int:
    """A stable, well-mixed 64-bit hash of ``data`` (the same in every process)."""
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def hash_str(text: str) -> int:
    """``hash_bytes`` of the UTF-8 encoding of ``text``."""
    return hash_bytes(text.encode("utf-8", "surrogatepass"))
