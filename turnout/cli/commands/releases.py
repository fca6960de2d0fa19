"""``release`` (Typer signatures; lazy bodies): start, status (``--watch``), promote,
abort, retry, pause, resume, skip-analysis, bypass, approve, history, queue, promote-to."""

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

PANEL = "Progressive delivery"

release_app = typer.Typer(
    name="release",
    help="Run Releases: canary, blue-green and A/B rollouts judged by the gateway's own "
    "per-request data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

NameArg = Annotated[str, typer.Argument(help="The Release's name.")]
ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why (kept in the audit log with the revision).")
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text or json.")]


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, rich_help_panel=PANEL)


@release_app.command("start")
def release_start(
    file: Annotated[str, typer.Option("--filename", "-f", help="A Release manifest (YAML).")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Apply a Release manifest: the gateway starts it (or queues it in its Environment)."""
    with cli_errors():
        from turnout.cli import releases as impl

        impl.start(connection(server, token, context, timeout), file)


@release_app.command("status")
def release_status(
    name: NameArg,
    namespace: NamespaceOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow it live.")] = False,
    output: OutputOpt = "text",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Phase, step, weight, the reason in numbers and the analysis per version."""
    with cli_errors():
        from turnout.cli import releases as impl

        impl.status(connection(server, token, context, timeout), name, namespace, watch, output)


@release_app.command("history")
def release_history(
    name: NameArg,
    namespace: NamespaceOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """The revisions that moved the Release: who, when, why."""
    with cli_errors():
        from turnout.cli import releases as impl

        impl.history(connection(server, token, context, timeout), name, namespace)


def _command(verb: str, doc: str) -> None:
    def run(
        name: NameArg,
        namespace: NamespaceOpt = None,
        reason: ReasonOpt = "",
        server: ServerOpt = None,
        token: TokenOpt = None,
        context: ContextOpt = None,
        timeout: TimeoutOpt = 10.0,
    ) -> None:
        with cli_errors():
            from turnout.cli import releases as impl

            impl.command(connection(server, token, context, timeout), verb, name, namespace, reason)

    run.__doc__ = doc
    release_app.command(verb)(run)


_command("promote", "Send all traffic to the candidate now.")
_command("abort", "Send all traffic back to stable, in every worker and replica.")
_command("retry", "Start an aborted or degraded Release over from its first step.")
_command("pause", "Stop advancing (the candidate is still judged).")
_command("resume", "Go on from a pause.")
_command("skip-analysis", "The emergency bypass: stop judging (needs --reason; audited).")
_command(
    "bypass",
    "The emergency bypass of the environment's queue, schedule and blackout windows "
    "(needs --reason; audited).",
)


@release_app.command("queue")
def release_queue(
    environment: Annotated[
        str | None, typer.Argument(help="The Environment (all of them without).")
    ] = None,
    pause: Annotated[bool, typer.Option("--pause", help="Start no queued release.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Start them again.")] = False,
    reason: ReasonOpt = "",
    output: OutputOpt = "text",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """An Environment's release queue (live, then queued in order, with why); --pause/--resume."""
    with cli_errors():
        from turnout.cli import releases as impl

        impl.queue(
            connection(server, token, context, timeout), environment, output, pause, resume, reason
        )


@release_app.command("promote-to")
def release_promote_to(
    name: NameArg,
    environment: Annotated[str, typer.Argument(help="The Environment to promote to.")],
    namespace: NamespaceOpt = None,
    to_namespace: Annotated[
        str | None,
        typer.Option("--to-namespace", help="The target namespace (default: its first)."),
    ] = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Copy a Promoted Release (same spec) into the next Environment's queue."""
    with cli_errors():
        from turnout.cli import releases as impl

        impl.promote_to(
            connection(server, token, context, timeout), name, environment, namespace, to_namespace
        )


@release_app.command("approve")
def release_approve(
    name: NameArg,
    gate: Annotated[
        str | None,
        typer.Option("--gate", help="One of the Release's approvals (default: what is due)."),
    ] = None,
    namespace: NamespaceOpt = None,
    reason: ReasonOpt = "",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Approve a manual gate (spec.approvals) or an untimed pause step; audited."""
    with cli_errors():
        from turnout.cli import releases as impl

        impl.approve(connection(server, token, context, timeout), name, namespace, gate, reason)
