"""Option types shared by the client commands, and the connection options they carry.

Every client command takes ``--server``, ``--token``, ``--context`` and ``--timeout``.
They are declared here once as ``Annotated`` aliases and collected into ``Connection``;
the environment (``TURNOUT_SERVER``, ``TURNOUT_TOKEN``, ``TURNOUT_CONTEXT``) is read by
``turnout.cli.contexts``, not by Typer, so error messages can say where a value came
from. Imports only typer: this module is loaded by ``turnout --help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

PANEL = "Connection"

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        "-s",
        help="Admin API URL (env TURNOUT_SERVER; default http://127.0.0.1:9901).",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Bearer token (env TURNOUT_TOKEN; default: the local bootstrap token).",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
ContextOpt = Annotated[
    str | None,
    typer.Option(
        "--context",
        help="Context from the contexts file (env TURNOUT_CONTEXT).",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", help="Seconds to wait for the server.", rich_help_panel=PANEL),
]

NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace (default: the context's, or 'default')."),
]
FilesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filename", "--file", "-f", help="Manifest file or directory (repeatable); '-' is stdin."
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Validate on the server and show the result; store nothing."),
]
MessageOpt = Annotated[
    str | None,
    typer.Option("--message", "-m", help="Recorded in the revision history and the audit log."),
]


@dataclass(frozen=True, slots=True)
class Connection:
    """The connection options as given on the command line (``None`` = not given)."""

    server: str | None = None
    token: str | None = None
    context: str | None = None
    timeout: float = 10.0


def connection(
    server: str | None, token: str | None, context: str | None, timeout: float
) -> Connection:
    if timeout <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--timeout")
    return Connection(server, token, context, timeout)
