"""The host-wide outlier table: one ejection record per endpoint, shared by every worker.

Outlier detection (``health.OutlierDetector``) counts consecutive errors per endpoint.
Counted per worker, N workers let N × the threshold failures reach users before an
endpoint is out everywhere, and each worker ejects and releases on its own schedule.
Envoy ejects per host; so does Turnout, with the same approach as the rate-limit table
(``ratelimit.local``):

- **The file.** The supervisor calls ``EjectionTable.create(path)`` before starting the
  workers (``/dev/shm`` when there is one, written then renamed into place); each worker
  ``open``-s and ``mmap``-s it ``MAP_SHARED``, so a store by one process is seen by every
  other at its next load.
- **The rows.** After a 4 KiB header come ``slots`` rows of eight 8-byte words: the
  64-bit hash of the endpoint's key (0 = empty), then ``ejected_until``,
  ``released_at``, ``consecutive_5xx``, ``consecutive_gateway``, ``times_ejected`` (as
  doubles) and two spare words. The key is the pool key (address, TLS, h2c), identical
  in every worker because every worker compiles the same revision. A key claims its row
  once (linear probing from ``hash % slots`` under a lock on the byte just past the
  rows); rows are never freed: the table holds ``slots`` distinct endpoints per run
  (4096 by default, 256 KiB), and an endpoint that finds it full keeps per-worker state
  (logged once).
- **The lock.** Counting an error is a read-modify-write of one row: the detector takes
  ``fcntl.lockf`` on the row's byte, loads the row into the worker's ``EndpointHealth``,
  runs the unchanged per-endpoint logic, stores it back and unlocks. The lock syscalls
  are the memory barriers. Successes do not lock: they only zero the counters, and only
  when they are not zero already.
- **Reads.** Every pick reads ``ejected_until`` from the row without a lock (an aligned
  8-byte load), so an ejection made by one worker holds in all of them from their next
  pick, and all of them release it at the same instant: the clock is
  ``time.perf_counter()``, which on Linux is ``CLOCK_MONOTONIC``, one clock per host.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

MAGIC: Final = b"TNOUTLR1"
HEADER_BYTES: Final = 4096
ROW_WORDS: Final = 8
DEFAULT_SLOTS: Final = 4096
# word offsets inside a row
UNTIL: Final = 1
RELEASED: Final = 2
C5XX: Final = 3
CGATEWAY: Final = 4
TIMES: Final = 5


def key_hash(key: str) -> int:
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return h or 1


class EjectionTable:
    """Outlier-detection state of the host's endpoints in shared memory."""

    def __init__(self, mm: mmap.mmap, fd: int, path: Path | None) -> None:
        if mm[:8] != MAGIC or (len(mm) - HEADER_BYTES) % (ROW_WORDS * 8):
            raise ValueError(f"{path}: not a Turnout outlier table")
        self._mm = mm
        self._fd = fd
        self.path = path
        self.slots = (len(mm) - HEADER_BYTES) // (ROW_WORDS * 8)
        slab = memoryview(mm)[HEADER_BYTES:]
        self._slab = slab
        self.hashes = slab.cast("Q")
        self.cells = slab.cast("d")
        self._full_logged = False

    @classmethod
    def create(cls, path: str | os.PathLike[str], slots: int = DEFAULT_SLOTS) -> EjectionTable:
        """Supervisor side: write a new, empty table at ``path`` (replacing any) and open it."""
        if slots < 1:
            raise ValueError("slots must be >= 1")
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, HEADER_BYTES + slots * ROW_WORDS * 8)
            os.pwrite(fd, MAGIC, 0)
            os.replace(tmp, target)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return cls.open(target)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> EjectionTable:
        """Worker side: map a table made by ``create``."""
        target = Path(path)
        fd = os.open(target, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_BYTES:
                raise ValueError(f"{target}: not a Turnout outlier table (too short)")
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        try:
            return cls(mm, fd, target)
        except BaseException:
            mm.close()
            os.close(fd)
            raise

    def row_for(self, key: str) -> int:
        """The word index of ``key``'s row (claimed on first use); -1 when the table is full."""
        h = key_hash(key)
        slots = self.slots
        hashes = self.hashes
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, slots)  # the claim lock, past the row locks
        try:
            start = h % slots
            for i in range(slots):
                slot = (start + i) % slots
                seen = hashes[slot * ROW_WORDS]
                if seen == h:
                    return slot * ROW_WORDS
                if seen == 0:
                    hashes[slot * ROW_WORDS] = h
                    return slot * ROW_WORDS
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, slots)
        if not self._full_logged:
            self._full_logged = True
            log.warning(
                "the outlier table is full (%d endpoints): further endpoints are ejected "
                "per worker",
                slots,
            )
        return -1

    def find(self, key: str) -> int:
        """``key``'s row, or -1 when it has none (a read: claims nothing, takes no lock)."""
        h = key_hash(key)
        slots = self.slots
        start = h % slots
        for i in range(slots):
            seen = self.hashes[((start + i) % slots) * ROW_WORDS]
            if seen == h:
                return ((start + i) % slots) * ROW_WORDS
            if seen == 0:
                return -1
        return -1

    def remaining(self, key: str, now: float) -> float:
        """Seconds ``key`` stays ejected after ``now`` (0 when it is not ejected)."""
        row = self.find(key)
        return max(0.0, self.cells[row + UNTIL] - now) if row >= 0 else 0.0

    def lock(self, row: int) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, row // ROW_WORDS)

    def unlock(self, row: int) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, row // ROW_WORDS)

    def close(self) -> None:
        if self._mm.closed:
            return
        self.hashes.release()
        self.cells.release()
        self._slab.release()
        self._mm.close()
        os.close(self._fd)
