"""``backup`` and ``restore`` (Typer signatures): offline copies of the whole store."""

from __future__ import annotations

from typing import Annotated

import typer

from turnout.cli.errors import cli_errors

PANEL = "Store (offline)"

StoreOpt = Annotated[
    str,
    typer.Option(
        envvar="TURNOUT_STORE",
        help="postgresql://… or sqlite:///PATH [default: SQLite in the data dir].",
        show_default=False,
    ),
]
DataDirOpt = Annotated[
    str,
    typer.Option(
        envvar="TURNOUT_DATA_DIR", help="The data dir of `turnout serve`.", show_default=False
    ),
]


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(backup)
    app.command(rich_help_panel=PANEL)(restore)


def backup(
    output: Annotated[str, typer.Option("--output", "-o", help="The backup file ('-': stdout).")],
    store: StoreOpt = "",
    data_dir: DataDirOpt = "",
) -> None:
    """Copy the whole store (objects, revisions, tokens, audit) to a JSON-lines file.
    Secrets stay encrypted; tokens are only hashes."""
    with cli_errors():
        from turnout.cli.backup import run_backup

        run_backup(store, data_dir, output)


def restore(
    input_file: Annotated[str, typer.Option("--input", "-i", help="A file from `turnout backup`.")],
    store: StoreOpt = "",
    data_dir: DataDirOpt = "",
    secrets_key_file: Annotated[
        str,
        typer.Option(
            envvar="TURNOUT_SECRETS_KEY_FILE",
            help="The target's keys, plus the backup's key if it differs.",
            show_default=False,
        ),
    ] = "",
) -> None:
    """Load a backup into an empty store; Secrets are re-encrypted with the target's key."""
    with cli_errors():
        from turnout.cli.backup import run_restore

        run_restore(store, data_dir, input_file, secrets_key_file)
