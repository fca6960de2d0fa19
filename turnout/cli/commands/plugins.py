"""``turnout plugin new NAME`` (Typer signature; the body is in cli.plugin_skeleton)."""

from __future__ import annotations

from typing import Annotated

import typer

from turnout.cli.errors import cli_errors

PANEL = "Plugins"

plugin_app = typer.Typer(help="Filter plugins: write, test and ship Python filters.")


def register(app: typer.Typer) -> None:
    app.add_typer(plugin_app, name="plugin", rich_help_panel=PANEL)


@plugin_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. 'add-tenant' (entry point).")],
    directory: Annotated[
        str, typer.Option("--dir", "-d", help="Where to create the package directory.")
    ] = ".",
) -> None:
    """Generate a plugin package: pyproject with the turnout.filters entry point, a
    plugin class with a config model, a FilterPlugin manifest and a test."""
    with cli_errors():
        from turnout.cli.plugin_skeleton import create

        path = create(name, directory)
        typer.echo(f"created {path}: pip install -e {path} && pytest {path}")
