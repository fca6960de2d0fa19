"""``explain``, ``top`` and ``logs`` (Typer signatures; lazy bodies)."""

from __future__ import annotations

from typing import Annotated

import typer

from turnout.cli.errors import cli_errors
from turnout.cli.options import ContextOpt, ServerOpt, TimeoutOpt, TokenOpt, connection

PANEL = "Observability"


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(explain)


def explain(
    method: Annotated[str, typer.Argument(help="The request method, e.g. GET.")],
    url: Annotated[str, typer.Argument(help="The full URL, e.g. http://shop.example.com/api.")],
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="'name: value' (repeatable).", show_default=False),
    ] = None,
    file: Annotated[
        list[str] | None,
        typer.Option("--file", "-f", help="Explain against these manifests instead of the server."),
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Which listener, route, filters, backend and endpoints a request would get, and why."""
    with cli_errors():
        from turnout.cli.explain import run

        code = run(
            connection(server, token, context, timeout),
            method,
            url,
            header or [],
            file or [],
            output,
        )
    raise typer.Exit(code)
