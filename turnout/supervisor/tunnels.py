"""The directory of ``turnout connect`` sockets, one per run.

A Sandbox override with ``local: {}`` compiles to a unix-socket endpoint in this
directory (``config.sandboxes.tunnel_socket``); the control plane listens on that socket
while a developer's ``turnout connect`` is attached. The directory is private to the
user (0700) and lives under the system temp dir rather than the data dir because unix
socket paths are limited to 108 bytes and data dirs can be deep.
"""

from __future__ import annotations

import shutil
import tempfile


def create_tunnel_dir() -> str:
    return tempfile.mkdtemp(prefix="turnout-tunnels-")


def remove_tunnel_dir(path: str) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)
