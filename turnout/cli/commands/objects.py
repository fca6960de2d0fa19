"""``apply``, ``diff``, ``get``, ``describe``, ``delete`` (Typer signatures; lazy bodies)."""

from __future__ import annotations

from typing import Annotated

import typer

from turnout.cli.errors import cli_errors
from turnout.cli.options import (
    ContextOpt,
    DryRunOpt,
    FilesOpt,
    MessageOpt,
    NamespaceOpt,
    ServerOpt,
    TimeoutOpt,
    TokenOpt,
    connection,
)

PANEL = "Client commands (admin API)"

Args = Annotated[
    list[str] | None,
    typer.Argument(
        help="KIND [NAME...], KIND1,KIND2, 'all', or KIND/NAME... "
        "(kinds: namespaces, gatewayclasses, gateways, httproutes, backends, or short names)",
        show_default=False,
        metavar="KIND [NAME]",
    ),
]
SelectorOpt = Annotated[
    str, typer.Option("--selector", "-l", help="Label selector, e.g. 'app=shop,tier!=db'.")
]
AllNamespacesOpt = Annotated[
    bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
]
IgnoreNotFoundOpt = Annotated[
    bool, typer.Option("--ignore-not-found", help="Succeed when an object is already gone.")
]


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(apply)
    app.command(rich_help_panel=PANEL)(diff)
    app.command(rich_help_panel=PANEL)(get)
    app.command(rich_help_panel=PANEL)(describe)
    app.command(rich_help_panel=PANEL)(delete)


def apply(
    filename: FilesOpt = None,
    dry_run: DryRunOpt = False,
    message: MessageOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Create or update objects from files, directories or stdin, atomically."""
    with cli_errors():
        from turnout.cli.apply import apply as run

        run(connection(server, token, context, timeout), filename or [], dry_run, message)


def diff(
    filename: FilesOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Show what `apply -f` would change; exit 1 if anything, 0 if nothing, 2 on errors."""
    with cli_errors(error_exit=2):
        from turnout.cli.apply import diff as run

        code = run(connection(server, token, context, timeout), filename or [])
    raise typer.Exit(code)


def get(
    args: Args = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    selector: SelectorOpt = "",
    output: Annotated[
        str, typer.Option("--output", "-o", help="table, wide, yaml, json or name.")
    ] = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """List objects, or show some by name."""
    with cli_errors():
        from turnout.cli.resources import get as run

        conn = connection(server, token, context, timeout)
        run(conn, args or [], namespace, all_namespaces, selector, output)


def describe(
    args: Args = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    selector: SelectorOpt = "",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Show objects in detail: metadata, spec, status conditions, workers."""
    with cli_errors():
        from turnout.cli.resources import describe as run

        conn = connection(server, token, context, timeout)
        run(conn, args or [], namespace, all_namespaces, selector)


def delete(
    args: Args = None,
    filename: FilesOpt = None,
    namespace: NamespaceOpt = None,
    selector: SelectorOpt = "",
    all_objects: Annotated[
        bool, typer.Option("--all", help="Delete every object of the kind in the namespace.")
    ] = False,
    ignore_not_found: IgnoreNotFoundOpt = False,
    dry_run: DryRunOpt = False,
    message: MessageOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Delete objects by KIND NAME..., KIND/NAME, -l/--all, or the manifests in -f files."""
    with cli_errors():
        conn = connection(server, token, context, timeout)
        if filename:
            if args:
                raise typer.BadParameter("give either -f FILE or KIND NAME, not both")
            from turnout.cli.apply import delete_files

            delete_files(conn, filename, dry_run, message, ignore_not_found)
            return
        from turnout.cli.resources import delete as run

        run(conn, args or [], namespace, selector, all_objects, ignore_not_found, dry_run, message)
