"""Where Turnout keeps its files on this machine.

The data dir holds the SQLite store and the bootstrap admin token; ``turnout serve`` and
the CLI resolve it the same way, so a CLI on the same machine finds the local server's
token without being told. ``TURNOUT_DATA_DIR`` wins, then ``$XDG_DATA_HOME/turnout``,
then ``~/.local/share/turnout``. The CLI's contexts file follows ``XDG_CONFIG_HOME``.
"""

from __future__ import annotations

import os
from pathlib import Path

ADMIN_TOKEN_FILE = "admin-token"
DEFAULT_ADMIN_ADDRESS = "127.0.0.1:9901"


def default_data_dir() -> Path:
    explicit = os.environ.get("TURNOUT_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "turnout"


def default_contexts_file() -> Path:
    explicit = os.environ.get("TURNOUT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "turnout" / "config.yaml"
