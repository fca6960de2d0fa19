"""The host-wide rate-limit table: created by the supervisor, mapped by every worker.

Local rate limits are exact across the workers of one host because every worker counts
in the same shared-memory table (``proxy.ratelimit.local``: an mmap-ed file, one
``fcntl`` lock per slot group around each read-modify-write). The supervisor creates the
file once per run — on tmpfs (``/dev/shm``) when there is one, else in the data dir —
passes its path to each worker in the init message, and removes it on exit. Reloads
keep the table, so counters survive configuration changes. The outlier table
(``proxy.upstream.ejections``) is made the same way, so an ejection holds host-wide.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from turnout.config.configset import ConfigSet
from turnout.core.netaddr import AddressError, parse_address
from turnout.proxy.ratelimit.local import LocalStore
from turnout.proxy.upstream.ejections import EjectionTable

SLOTS = 131_072  # 5 MiB; see proxy.ratelimit.local for the eviction rule when full


def _table_dir(data_dir: Path | None) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = shm
    elif data_dir is not None:
        base = data_dir
    else:
        base = Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return base


def create_limit_table(data_dir: Path | None) -> str:
    path = _table_dir(data_dir) / f"turnout-{os.getpid()}-ratelimit.table"
    LocalStore.create(path, SLOTS).close()
    return str(path)


def create_ejection_table(data_dir: Path | None) -> str:
    path = _table_dir(data_dir) / f"turnout-{os.getpid()}-outliers.table"
    EjectionTable.create(path).close()
    return str(path)


def ejected_endpoints(table: EjectionTable | None, config: ConfigSet) -> dict[str, float]:
    """Seconds each ejected endpoint of the configured Backends stays out (host-wide)."""
    if table is None:
        return {}
    now = time.perf_counter()  # the workers' clock (CLOCK_MONOTONIC on Linux)
    out: dict[str, float] = {}
    for obj in config.backends().values():
        for ep in obj.spec.endpoints:
            try:
                key = str(parse_address(ep.address, allow_missing_port=True))
            except AddressError:
                continue
            left = table.remaining(key, now)
            if left > 0.0:
                out[key] = round(left, 3)
    return out


def remove_limit_table(path: str) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
