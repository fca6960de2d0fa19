"""Request ids: UUID-shaped, ordered within a generator, unique across generators."""

from __future__ import annotations

import re
import uuid

import pytest

from turnout.core.ids import RequestIdGenerator

_CANONICAL = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.mark.parametrize("seed", [None, b"\x00" * 8, b"\xff" * 8, bytes(range(8))])
def test_ids_are_canonical_version_4_uuids(seed: bytes | None) -> None:
    gen = RequestIdGenerator(seed)

    for _ in range(3):
        rid = gen.next()
        assert isinstance(rid, bytes)
        assert _CANONICAL.fullmatch(rid), rid
        parsed = uuid.UUID(rid.decode())
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed).encode() == rid


def test_ids_count_up_within_one_generator() -> None:
    gen = RequestIdGenerator(b"\x12\x34\x56\x78\x9a\xbc\xde\xf0")

    ids = [gen.next() for _ in range(1000)]

    assert len(set(ids)) == 1000
    assert ids == sorted(ids)
    assert ids[0].endswith(b"-000000000001")
    assert ids[41].endswith(b"-00000000002a")
    assert {i[:24] for i in ids} == {ids[0][:24]}


def test_the_same_seed_gives_the_same_ids() -> None:
    seed = b"abcdefgh"

    assert RequestIdGenerator(seed).next() == RequestIdGenerator(seed).next()


def test_ids_are_unique_across_generators() -> None:
    generators = [RequestIdGenerator() for _ in range(50)]

    ids = [g.next() for g in generators for _ in range(20)]

    assert len(set(ids)) == len(ids)


def test_different_seeds_give_different_ids() -> None:
    a = RequestIdGenerator(bytes.fromhex("0000000000000000"))
    b = RequestIdGenerator(bytes.fromhex("0000000000004000"))

    assert a.next() != b.next()
