"""The shared-memory table in one process: layout, sharing, eviction, validation.

The cross-process exactness tests (real worker processes hammering one table) are in
``tests/integration/ratelimit/test_local_processes.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from turnout.proxy.ratelimit.algorithms import SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.local import HEADER_BYTES, WAYS, LocalStore

QUOTA = TokenBucket(rate=1, interval=86400.0, burst=3)


def take(store: LocalStore, h: int, now: float = 10.0) -> bool:
    return store.decide(h, QUOTA, now, 1).allowed


def test_slots_round_up_to_power_of_two_groups(tmp_path: Path) -> None:
    with LocalStore.create(tmp_path / "t", slots=100) as store:
        assert store.groups == 16 and store.slots == 128 == 16 * WAYS
        assert os.path.getsize(tmp_path / "t") == HEADER_BYTES + 16 * 320
        assert store.shared
    with LocalStore.private(slots=1) as store:
        assert store.slots == WAYS and not store.shared


def test_two_opens_of_one_file_share_counters(tmp_path: Path) -> None:
    path = tmp_path / "table"
    with LocalStore.create(path, slots=64) as a, LocalStore.open(path) as b:
        assert a.secret == b.secret and a.groups == b.groups
        assert take(a, 77) and take(b, 77) and take(a, 77)
        assert not take(b, 77)
        assert take(b, 78)  # another key has its own counter
        assert a.occupancy() == b.occupancy() == 2


def test_create_replaces_the_file_without_truncating_an_open_map(tmp_path: Path) -> None:
    path = tmp_path / "table"
    old = LocalStore.create(path, slots=64)
    try:
        take(old, 5)
        with LocalStore.create(path, slots=64) as new:
            assert new.occupancy() == 0 and new.secret != old.secret
            assert old.occupancy() == 1  # the old generation keeps its own file
            assert take(old, 5)
        assert not list(tmp_path.glob(".*.tmp"))
    finally:
        old.close()


def test_a_full_group_evicts_its_least_recently_updated_slot() -> None:
    with LocalStore.private(slots=WAYS) as store:  # a single group
        for h in range(1, WAYS + 1):
            for _ in range(3):
                assert take(store, h, now=float(h))
        assert not take(store, 3, now=20.0)  # key 3 was just updated
        assert store.evictions == 0 and store.occupancy() == WAYS
        assert take(store, 100, now=21.0)  # evicts key 1 (updated at t=1)
        assert store.evictions == 1
        assert not take(store, 2, now=22.0)  # key 2 kept its counter
        assert take(store, 1, now=23.0)  # key 1 starts over (evicts key 2 now)
        assert store.evictions == 2


def test_algorithms_share_the_slot_format() -> None:
    window = SlidingWindow(requests=2, window=10.0)
    with LocalStore.private(slots=64) as store:
        got = [store.decide(9, window, 105.0, 1).allowed for _ in range(3)]
        assert got == [True, True, False]
        assert store.decide(9, window, 125.0, 1).remaining == 1


def test_open_rejects_other_files(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"x" * 10)
    with pytest.raises(ValueError, match="too short"):
        LocalStore.open(short)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * (HEADER_BYTES + 320))
    with pytest.raises(ValueError, match="not a Turnout rate-limit table"):
        LocalStore.open(junk)
    path = tmp_path / "table"
    LocalStore.create(path, slots=64).close()
    with path.open("ab") as f:
        f.write(b"\0" * 320)
    with pytest.raises(ValueError, match="bad size"):
        LocalStore.open(path)
    with pytest.raises(FileNotFoundError):
        LocalStore.open(tmp_path / "missing")


def test_close_is_idempotent(tmp_path: Path) -> None:
    store = LocalStore.create(tmp_path / "t", slots=8)
    store.close()
    store.close()
    with pytest.raises(ValueError):
        LocalStore.private(slots=0)
