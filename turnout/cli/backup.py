"""``turnout backup`` / ``restore``: the bodies (see ``control.store.backup``).

The one CLI module besides ``serve`` that touches the store directly: a backup moves
what the admin API never returns (token hashes, sealed Secrets, the whole audit log) and
must work with the gateway stopped, so it works on the store URL, like ``serve``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from turnout.cli.errors import CliError
from turnout.cli.output import write
from turnout.control.store.backup import (
    KEY_ENV,
    StoreError,
    backup,
    load_keyring,
    restore,
    store_url,
)
from turnout.core.paths import default_data_dir


def _url(store: str, data_dir: str) -> str:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return store_url(store or None, _data_dir(data_dir))
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _data_dir(data_dir: str) -> Path:
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {table}" for table, n in counts.items() if n) or "no rows"


def run_backup(store: str, data_dir: str, output: str) -> None:
    url = _url(store, data_dir)
    try:
        if output == "-":
            counts = asyncio.run(backup(url, sys.stdout))
        else:
            path = Path(output).expanduser()
            # The file holds token hashes and sealed Secrets: private, like the store.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                counts = asyncio.run(backup(url, out))
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    except (StoreError, ValueError) as exc:
        raise CliError(str(exc)) from None
    write(f"backed up {_summary(counts)} to {output}", err=output == "-")


def run_restore(store: str, data_dir: str, input_file: str, secrets_key_file: str) -> None:
    url = _url(store, data_dir)
    try:
        keyring = load_keyring(secrets_key_file, os.environ.get(KEY_ENV), _data_dir(data_dir))
        with open(Path(input_file).expanduser(), encoding="utf-8") as source:
            counts = asyncio.run(restore(url, source, keyring=keyring))
    except OSError as exc:
        raise CliError(f"cannot read {input_file}: {exc.strerror or exc}") from None
    except (StoreError, ValueError) as exc:
        raise CliError(str(exc)) from None
    write(f"restored {_summary(counts)} from {input_file}")
