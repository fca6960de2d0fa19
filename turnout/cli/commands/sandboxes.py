"""``sandbox``, ``routegroup`` and ``trace`` (Typer signatures; lazy bodies)."""

from __future__ import annotations

from typing import Annotated

import typer

from turnout.cli.errors import CliError, cli_errors
from turnout.cli.options import (
    ContextOpt,
    DryRunOpt,
    MessageOpt,
    NamespaceOpt,
    ServerOpt,
    TimeoutOpt,
    TokenOpt,
    connection,
)

PANEL = "Sandboxes (routing keys)"

sandbox_app = typer.Typer(
    name="sandbox",
    help="Create, list, show and delete Sandboxes: a routing key whose requests reach "
    "your own endpoints for some backends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
routegroup_app = typer.Typer(
    name="routegroup",
    help="Create, list, show and delete RouteGroups: one routing key for the overrides "
    "of every Sandbox whose labels match.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

KeyOpt = Annotated[
    str | None,
    typer.Option("--key", help="The routing key (default: the server generates one)."),
]
LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", help="A label KEY=VALUE (repeatable).")
]
DescriptionOpt = Annotated[str | None, typer.Option("--description", help="Free text.")]
GatewayOpt = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        help="The gateway's URL for the printed curl line and preview link (default: the "
        "first HTTP listener of the Gateways, a wildcard address replaced by the admin "
        "server's host).",
        show_default=False,
    ),
]
WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        help="Seconds to wait until every worker routes the key, then print how long it "
        "took, as measured by this client from sending the request until its polls (every "
        "50 ms) saw the status say so; 0: don't wait. Running out of time is a warning, "
        "not an error.",
        min=0,
    ),
]
CreateOutputOpt = Annotated[
    str, typer.Option("--output", "-o", help="text, yaml or json (the created object).")
]
GetOutputOpt = Annotated[str, typer.Option("--output", "-o", help="text, yaml or json.")]
ListOutputOpt = Annotated[
    str, typer.Option("--output", "-o", help="table, wide, yaml, json or name.")
]
SelectorOpt = Annotated[
    str, typer.Option("--selector", "-l", help="Label selector, e.g. 'team=checkout'.")
]
AllNamespacesOpt = Annotated[
    bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
]
IgnoreNotFoundOpt = Annotated[
    bool, typer.Option("--ignore-not-found", help="Succeed when an object is already gone.")
]
NameArg = Annotated[str, typer.Argument(help="The object's name.")]
NamesArg = Annotated[list[str], typer.Argument(help="The objects' names.")]


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, rich_help_panel=PANEL)
    app.add_typer(routegroup_app, rich_help_panel=PANEL)
    app.command(rich_help_panel=PANEL)(trace)


# -- sandbox -----------------------------------------------------------------------------


@sandbox_app.command("create")
def sandbox_create(
    name: NameArg,
    namespace: NamespaceOpt = None,
    override: Annotated[
        list[str] | None,
        typer.Option(
            "--override",
            help="BACKEND=HOST:PORT[,HOST:PORT...]: keyed requests for BACKEND go there "
            "(repeatable).",
            show_default=False,
        ),
    ] = None,
    local: Annotated[
        list[str] | None,
        typer.Option(
            "--local",
            help="BACKEND: keyed requests go to `turnout connect` on your machine (repeatable).",
            show_default=False,
        ),
    ] = None,
    key: KeyOpt = None,
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", help="Delete the sandbox this long after creation, e.g. 2h, 7d."),
    ] = None,
    label: LabelOpt = None,
    description: DescriptionOpt = None,
    gateway: GatewayOpt = None,
    wait: WaitOpt = 5.0,
    output: CreateOutputOpt = "text",
    dry_run: DryRunOpt = False,
    message: MessageOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Create a Sandbox and print its routing key with a curl line, header and preview link."""
    with cli_errors():
        from turnout.cli import sandboxes as impl

        conn = connection(server, token, context, timeout)
        manifest = impl.sandbox_manifest(
            name,
            impl.parse_overrides(override or [], local or []),
            key=key,
            ttl=ttl,
            labels=impl.parse_pairs(label or [], "--label"),
            description=description,
        )
        impl.create(
            conn,
            manifest,
            namespace,
            output=output,
            dry_run=dry_run,
            wait=wait,
            gateway=gateway,
            message=message,
        )


# -- routegroup --------------------------------------------------------------------------


@routegroup_app.command("create")
def routegroup_create(
    name: NameArg,
    match: Annotated[
        list[str],
        typer.Option(
            "--match",
            help="KEY=VALUE: include the Sandboxes with this label (repeatable; all must match).",
            show_default=False,
        ),
    ],
    namespace: NamespaceOpt = None,
    key: KeyOpt = None,
    label: LabelOpt = None,
    description: DescriptionOpt = None,
    gateway: GatewayOpt = None,
    wait: WaitOpt = 5.0,
    output: CreateOutputOpt = "text",
    dry_run: DryRunOpt = False,
    message: MessageOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Create a RouteGroup and print its routing key with a curl line, header and link."""
    with cli_errors():
        from turnout.cli import sandboxes as impl

        conn = connection(server, token, context, timeout)
        manifest = impl.route_group_manifest(
            name,
            impl.parse_pairs(match, "--match"),
            key=key,
            labels=impl.parse_pairs(label or [], "--label"),
            description=description,
        )
        impl.create(
            conn,
            manifest,
            namespace,
            output=output,
            dry_run=dry_run,
            wait=wait,
            gateway=gateway,
            message=message,
        )


# -- list, get, delete: the same three commands for both kinds ---------------------------


def _object_commands(app: typer.Typer, kind: str, plural: str, shows: str) -> None:
    """Add ``list``, ``get`` and ``delete`` for ``kind`` (the name of its ``KindInfo`` in
    ``cli.sandboxes``, looked up when a command runs so ``--help`` stays light)."""

    @app.command("list")
    def list_(
        namespace: NamespaceOpt = None,
        all_namespaces: AllNamespacesOpt = False,
        selector: SelectorOpt = "",
        output: ListOutputOpt = "table",
        server: ServerOpt = None,
        token: TokenOpt = None,
        context: ContextOpt = None,
        timeout: TimeoutOpt = 10.0,
    ) -> None:
        with cli_errors():
            from turnout.cli import sandboxes as impl

            conn = connection(server, token, context, timeout)
            info = getattr(impl, kind)
            impl.list_objects(conn, info, namespace, all_namespaces, selector, output)

    @app.command("get")
    def get(
        name: NameArg,
        namespace: NamespaceOpt = None,
        output: GetOutputOpt = "text",
        gateway: GatewayOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
        context: ContextOpt = None,
        timeout: TimeoutOpt = 10.0,
    ) -> None:
        with cli_errors():
            from turnout.cli import sandboxes as impl

            conn = connection(server, token, context, timeout)
            impl.get(conn, getattr(impl, kind), name, namespace, output, gateway)

    @app.command("delete")
    def delete(
        names: NamesArg,
        namespace: NamespaceOpt = None,
        ignore_not_found: IgnoreNotFoundOpt = False,
        dry_run: DryRunOpt = False,
        message: MessageOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
        context: ContextOpt = None,
        timeout: TimeoutOpt = 10.0,
    ) -> None:
        with cli_errors():
            from turnout.cli import sandboxes as impl

            conn = connection(server, token, context, timeout)
            info = getattr(impl, kind)
            impl.delete(conn, info, names, namespace, ignore_not_found, dry_run, message)

    list_.__doc__ = f"List {plural} (= `get {plural.lower()}`)."
    get.__doc__ = f"Show one of the {plural}: {shows}."
    delete.__doc__ = f"Delete {plural} (several at once in one revision)."


_object_commands(
    sandbox_app, "SANDBOX", "Sandboxes", "key, overrides, expiry, routability per worker"
)
_object_commands(
    routegroup_app,
    "ROUTE_GROUP",
    "RouteGroups",
    "key, match, the Sandboxes it joins, routability",
)


# -- trace -------------------------------------------------------------------------------


def trace(
    request_id: Annotated[
        str | None,
        typer.Argument(
            help="Show this request's hops (a traced request, or one with a routing key).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", "-k", help="The routing key.", show_default=False),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new requests until Ctrl-C.")
    ] = False,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", help="How many recent requests (with -f: before new ones).", min=1, max=1000
        ),
    ] = 100,
    output: Annotated[
        str, typer.Option("--output", "-o", help="table, or json (one object per line).")
    ] = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Show one request's hops (REQUEST_ID), or the requests that carried a routing key
    (--key): time, target, status, endpoint."""
    with cli_errors():
        if request_id is not None:
            if key is not None or follow:
                raise CliError("give REQUEST_ID or --key (with --follow), not both", 2)
            from turnout.cli.flow import show_request

            show_request(connection(server, token, context, timeout), request_id, output)
            return
        if key is None:
            raise CliError("give a REQUEST_ID or --key KEY", 2)
        from turnout.cli.trace import trace as run

        run(connection(server, token, context, timeout), key, follow, limit, output)
