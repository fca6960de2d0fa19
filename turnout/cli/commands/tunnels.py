"""``connect`` and ``port-forward`` (Typer signatures; the bodies are in cli.tunnels)."""

from __future__ import annotations

from typing import Annotated

import typer

from turnout.cli.errors import cli_errors
from turnout.cli.options import (
    ContextOpt,
    NamespaceOpt,
    ServerOpt,
    TimeoutOpt,
    TokenOpt,
    connection,
)

PANEL = "Sandboxes"


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(connect)
    app.command("port-forward", rich_help_panel=PANEL)(port_forward)


def connect(
    sandbox: Annotated[str, typer.Argument(help="The Sandbox with a 'local: {}' override.")],
    backend: Annotated[str, typer.Option("--backend", "-b", help="The overridden Backend.")],
    port: Annotated[int, typer.Option("--port", "-p", help="Local port to send requests to.")],
    host: Annotated[str, typer.Option("--host", help="Local host to send requests to.")] = (
        "127.0.0.1"
    ),
    namespace: NamespaceOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Serve a Sandbox's backend from this machine: keyed requests for BACKEND reach
    HOST:PORT through an outbound tunnel to the admin API (editor role)."""
    with cli_errors():
        from turnout.cli.tunnels import connect as run

        run(connection(server, token, context, timeout), sandbox, namespace, backend, host, port)


def port_forward(
    backend: Annotated[str, typer.Argument(help="The Backend to reach.")],
    local_port: Annotated[int, typer.Argument(help="Local port to listen on (0: any).")],
    address: Annotated[str, typer.Option("--address", help="Local address to listen on.")] = (
        "127.0.0.1"
    ),
    remote_port: Annotated[
        int | None,
        typer.Option("--remote-port", help="Port for endpoints that name none."),
    ] = None,
    namespace: NamespaceOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Forward a local port to a Backend's endpoints through the admin API (editor role)."""
    with cli_errors():
        from turnout.cli.tunnels import port_forward as run

        conn = connection(server, token, context, timeout)
        run(conn, backend, namespace, local_port, address, remote_port)
