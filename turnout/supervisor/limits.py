"""The host-wide rate-limit table: created by the supervisor, mapped by every worker.

Local rate limits are exact across the workers of one host because every worker counts
in the same shared-memory table (``proxy.ratelimit.local``: an mmap-ed file, one
``fcntl`` lock per slot group around each read-modify-write). The supervisor creates the
file once per run — on tmpfs (``/dev/shm``) when there is one, else in the data dir —
passes its path to each worker in the init message, and removes it on exit. Reloads
keep the table, so counters survive configuration changes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from turnout.proxy.ratelimit.local import LocalStore

SLOTS = 131_072  # 5 MiB; see proxy.ratelimit.local for the eviction rule when full


def create_limit_table(data_dir: Path | None) -> str:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = shm
    elif data_dir is not None:
        base = data_dir
    else:
        base = Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"turnout-{os.getpid()}-ratelimit.table"
    LocalStore.create(path, SLOTS).close()
    return str(path)


def remove_limit_table(path: str) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
