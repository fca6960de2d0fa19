"""``explain``, ``top`` and ``logs`` (Typer signatures; lazy bodies)."""

from __future__ import annotations

from typing import Annotated

import typer

from turnout.cli.errors import cli_errors
from turnout.cli.options import ContextOpt, ServerOpt, TimeoutOpt, TokenOpt, connection

PANEL = "Observability"


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(explain)
    app.command(rich_help_panel=PANEL)(top)
    app.command(rich_help_panel=PANEL)(logs)


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


def top(
    by: Annotated[
        str, typer.Option("--by", help="Rows per route, backend, or (route, backend) pair.")
    ] = "route",
    sort: Annotated[
        str, typer.Option("--sort", help="rps, errors, p50, p99, requests or name.")
    ] = "rps",
    interval: Annotated[float, typer.Option("--interval", help="Seconds between frames.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")] = 50,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Live requests/s, 5xx share, p50/p99 and connections per route or backend."""
    with cli_errors():
        from turnout.cli.top import top as run

        run(connection(server, token, context, timeout), by, sort, interval, once, limit)


def logs(
    route: Annotated[
        str, typer.Option("--route", help="A route (namespace/name); 'ns/*' for a prefix.")
    ] = "",
    status: Annotated[str, typer.Option("--status", help="5xx, 4xx, ... or a code.")] = "",
    key: Annotated[str, typer.Option("--key", help="Requests with this routing key.")] = "",
    consumer: Annotated[str, typer.Option("--consumer", help="Requests of this Consumer.")] = "",
    since: Annotated[
        str, typer.Option("--since", help="Only entries this recent, e.g. 5m.", show_default=False)
    ] = "",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new entries until Ctrl-C.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="How many recent entries.")
    ] = 100,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """The access log of every worker, merged, with tunnel, sandbox and reload events."""
    with cli_errors():
        from turnout.cli.logs import logs as run
        from turnout.cli.units import duration

        params = {"route": route, "status": status, "key": key, "consumer": consumer}
        run(
            connection(server, token, context, timeout),
            params,
            duration(since) if since else 0.0,
            follow,
            limit,
            output,
        )
