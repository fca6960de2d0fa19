"""The client commands' Typer surface: signatures and help, nothing else.

These modules import only typer and the light ``turnout.cli.options`` / ``errors``; each
command body imports its implementation (httpx, Rich, PyYAML...) when it runs, so
``turnout --help`` and ``turnout version`` stay fast. Every body runs inside
``cli_errors()``: failures print one line and exit non-zero.
"""

from __future__ import annotations

import typer

from turnout.cli.commands import (
    admin,
    cache,
    objects,
    observe,
    plugins,
    remediation,
    sandboxes,
    tunnels,
)
from turnout.cli.commands import releases as release_commands
from turnout.cli.commands import store as store_commands


def register(app: typer.Typer) -> None:
    objects.register(app)
    admin.register(app)
    sandboxes.register(app)
    tunnels.register(app)
    store_commands.register(app)
    remediation.register(app)
    release_commands.register(app)
    observe.register(app)
    plugins.register(app)
    cache.register(app)
