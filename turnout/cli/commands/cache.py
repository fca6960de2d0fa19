"""``cache purge`` (Typer signatures)."""

from __future__ import annotations

from typing import Annotated

import typer

from turnout.cli.errors import cli_errors
from turnout.cli.options import ContextOpt, ServerOpt, TimeoutOpt, TokenOpt, connection

PANEL = "Client commands (admin API)"

cache_app = typer.Typer(
    name="cache",
    help="Purge stored responses (TrafficPolicy cache), on every worker and replica.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, rich_help_panel=PANEL)


@cache_app.command("purge")
def purge(
    key: Annotated[
        list[str] | None,
        typer.Option("--key", "-k", help="A cache key, e.g. 'shop.example/items?page=2'."),
    ] = None,
    prefix: Annotated[
        list[str] | None,
        typer.Option("--prefix", "-p", help="Every key starting so, e.g. 'shop.example/items'."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="Every response whose Cache-Tag names it."),
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every stored response.")] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Purge by key, prefix or tag (repeatable), or --all."""
    with cli_errors():
        from turnout.cli.client import connect
        from turnout.cli.errors import CliError

        if not (key or prefix or tag or everything):
            raise CliError("name --key, --prefix or --tag (repeatable), or --all", 2)
        payload = {"keys": key or [], "prefixes": prefix or [], "tags": tag or []}
        if everything:
            payload["all"] = True  # type: ignore[assignment]
        with connect(connection(server, token, context, timeout)) as client:
            body = client.call("POST", "/api/v1/cache/purge", json=payload)
        if not isinstance(body, dict):
            raise CliError("the server sent an unexpected answer to POST /api/v1/cache/purge")
        redis = body.get("redis")
        shared = f"; {redis['deleted']} keys deleted in Redis" if redis else " (no Redis)"
        typer.echo(f"purged on {body.get('workers', 0)} worker(s){shared}")
