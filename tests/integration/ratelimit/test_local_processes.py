"""Local limits are exact across the worker processes of one host.

Two or three separate interpreters (``subprocess``, not fork: they share nothing but the
table file) open one ``LocalStore`` and hammer ``decide()`` at once. Each alone would use
the whole quota; the host must allow exactly the quota, per key, for a token bucket that does
not refill during the test and for a sliding window that does not roll over. Every
process must have been granted something, which shows they really competed. The control
(each process with a private table) overcounts, so the test can tell the difference.
A worker killed while it holds a group's lock does not block the others: the kernel drops
a process's record locks when it dies.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.ratelimit.conftest import Hammer
from turnout.proxy.ratelimit.algorithms import TokenBucket
from turnout.proxy.ratelimit.local import LocalStore

QUOTA = 3000
KEYS = 5
CALLS = QUOTA * KEYS  # per process: each process alone could use the whole quota


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("algorithm", [f"bucket:{QUOTA}", f"window:{QUOTA}"])
def test_worker_processes_share_one_exact_counter_per_key(
    tmp_path: Path, hammer: Hammer, algorithm: str, workers: int
) -> None:
    path = tmp_path / "ratelimit.table"
    LocalStore.create(path, slots=4096).close()  # as the supervisor does, before workers
    reports = hammer(workers, "local", str(path), algorithm, CALLS, KEYS)
    for key in (f"k{i}" for i in range(KEYS)):
        assert sum(r["allowed"][key] for r in reports) == QUOTA
    shares = [sum(r["allowed"].values()) for r in reports]
    assert all(share > 0 for share in shares), shares
    with LocalStore.open(path) as table:
        assert table.occupancy() == KEYS


def test_control_private_tables_overcount(tmp_path: Path, hammer: Hammer) -> None:
    reports = hammer(2, "private", "-", "bucket:100", 300, 1)
    assert sum(r["allowed"]["k0"] for r in reports) == 200


def test_a_worker_killed_holding_a_lock_blocks_nobody(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit.table"
    store = LocalStore.create(path, slots=64)
    try:
        h = 0x1234567  # any key hash; its group is h & (groups - 1)
        group = h & (store.groups - 1)
        holder = (
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(path)!r}, os.O_RDWR)\n"
            f"fcntl.lockf(fd, fcntl.LOCK_EX, 1, {group})\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
            with open(path, "rb+") as probe, pytest.raises(OSError):
                fcntl.lockf(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, group)
            proc.kill()
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        algorithm = TokenBucket(rate=1, interval=86400.0, burst=2)
        assert store.decide(h, algorithm, 10.0, 1).allowed  # would block if still held
    finally:
        store.close()
