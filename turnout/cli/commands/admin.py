"""``history``, ``rollback``, ``token``, ``audit``, ``status``, ``whoami`` (Typer signatures)."""

from __future__ import annotations

from typing import Annotated

import typer

from turnout.cli.errors import cli_errors
from turnout.cli.options import (
    ContextOpt,
    DryRunOpt,
    MessageOpt,
    ServerOpt,
    TimeoutOpt,
    TokenOpt,
    connection,
)

PANEL = "Client commands (admin API)"

token_app = typer.Typer(
    name="token",
    help="Create, list and revoke API tokens (admin role).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(history)
    app.command(rich_help_panel=PANEL)(rollback)
    app.add_typer(token_app, rich_help_panel=PANEL)
    app.command(rich_help_panel=PANEL)(audit)
    app.command(rich_help_panel=PANEL)(status)
    app.command(rich_help_panel=PANEL)(whoami)


def history(
    revision: Annotated[
        int | None, typer.Argument(help="Show this revision and its diff.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many revisions.", min=1)] = 20,
    before: Annotated[
        int | None, typer.Option("--before", help="Only revisions older than this one.")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, yaml or json.")] = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """List the revisions of the stored configuration, newest first."""
    with cli_errors():
        from turnout.cli.history import history as run

        run(connection(server, token, context, timeout), revision, limit, before, output)


def rollback(
    revision: Annotated[int, typer.Argument(help="The revision to return to.", min=1)],
    dry_run: DryRunOpt = False,
    message: MessageOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Make the objects of an earlier revision current again (as a new revision)."""
    with cli_errors():
        from turnout.cli.history import rollback as run

        run(connection(server, token, context, timeout), revision, dry_run, message)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="A unique name, e.g. ci-deploy.")],
    role: Annotated[
        str, typer.Option("--role", help="viewer, editor or admin.", show_default=True)
    ] = "viewer",
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Limit to this namespace (repeatable)."),
    ] = None,
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="Lifetime, e.g. 12h, 30d (default: none).")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text, json or yaml.")] = "text",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Create a token and print its secret (shown only this once)."""
    with cli_errors():
        from turnout.cli.tokens import create

        conn = connection(server, token, context, timeout)
        create(conn, name, role, namespace or [], ttl, output)


@token_app.command("list")
def token_list(
    all_tokens: Annotated[
        bool, typer.Option("--all", "-a", help="Include revoked tokens.")
    ] = False,
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")] = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """List tokens (never their secrets)."""
    with cli_errors():
        from turnout.cli.tokens import list_tokens

        list_tokens(connection(server, token, context, timeout), output, all_tokens)


@token_app.command("revoke")
def token_revoke(
    id_or_name: Annotated[str, typer.Argument(metavar="ID|NAME", help="The token to revoke.")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Revoke a token: it stops working at once."""
    with cli_errors():
        from turnout.cli.tokens import revoke

        revoke(connection(server, token, context, timeout), id_or_name)


def audit(
    limit: Annotated[int, typer.Option("--limit", help="How many entries.", min=1)] = 50,
    before: Annotated[
        int | None, typer.Option("--before", help="Only entries older than this id.")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="e.g. token:ci-deploy.")] = None,
    result: Annotated[
        str | None,
        typer.Option(
            "--result", help="ok, invalid, conflict, not_found, unauthenticated, forbidden, error."
        ),
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="table, wide, yaml or json.")
    ] = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Show the audit log, newest first (admin role)."""
    with cli_errors():
        from turnout.cli.audit import audit as run

        run(connection(server, token, context, timeout), limit, before, actor, result, output)


def status(
    output: Annotated[str, typer.Option("--output", "-o", help="text, yaml or json.")] = "text",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Show the served revision, the store and the workers."""
    with cli_errors():
        from turnout.cli.status import status as run

        run(connection(server, token, context, timeout), output)


def whoami(
    output: Annotated[str, typer.Option("--output", "-o", help="text, yaml or json.")] = "text",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Show which token the CLI uses and what it may do."""
    with cli_errors():
        from turnout.cli.status import whoami as run

        run(connection(server, token, context, timeout), output)
