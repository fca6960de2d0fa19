"""``incidents`` and ``runbook`` (Typer signatures; lazy bodies)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from turnout.cli.errors import cli_errors
from turnout.cli.options import ContextOpt, ServerOpt, TimeoutOpt, TokenOpt, connection

PANEL = "Remediation"

incidents_app = typer.Typer(
    name="incidents",
    help="Remediation runs started by alerts: list, show, approve, deny, cancel, export, advise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runbook_app = typer.Typer(
    name="runbook",
    help="Runbooks: apply, test a sample alert in dry-run, show their runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RunArg = Annotated[str, typer.Argument(help="The run's id (run-...).")]
FormatOpt = Annotated[str, typer.Option("--format", "-o", help="table, json or csv.")]


def register(app: typer.Typer) -> None:
    app.add_typer(incidents_app, rich_help_panel=PANEL)
    app.add_typer(runbook_app, rich_help_panel=PANEL)


@incidents_app.command("list")
def incidents_list(
    active: Annotated[bool, typer.Option("--active", help="Only runs still in progress.")] = False,
    approvals: Annotated[
        bool, typer.Option("--approvals", help="Only runs waiting for an approval.")
    ] = False,
    output: FormatOpt = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """List remediation runs, newest first."""
    with cli_errors():
        from turnout.cli.incidents import list_runs

        list_runs(connection(server, token, context, timeout), active, approvals, output)


@incidents_app.command("show")
def incidents_show(
    run: RunArg,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Show a run: its alert, plan, timeline and pending approval."""
    with cli_errors():
        from turnout.cli.incidents import show

        show(connection(server, token, context, timeout), run, output)


def _decision(verb: str, help_text: str) -> None:
    def command(
        run: RunArg,
        server: ServerOpt = None,
        token: TokenOpt = None,
        context: ContextOpt = None,
        timeout: TimeoutOpt = 10.0,
    ) -> None:
        with cli_errors():
            from turnout.cli.incidents import decide

            decide(connection(server, token, context, timeout), run, verb)

    command.__doc__ = help_text
    incidents_app.command(verb)(command)


_decision("approve", "Approve the step a run waits on (needs a role the step names).")
_decision("deny", "Deny the step a run waits on: the run ends, nothing more is done.")
_decision(
    "cancel",
    "Cancel an active run and revert its mitigations (or revert those a finished run "
    "still has in force).",
)


@incidents_app.command("advise")
def incidents_advise(
    run: RunArg,
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Ask the server's advisor model about a run (advice only; needs TURNOUT_ADVISOR_URL
    on the server)."""
    with cli_errors():
        from turnout.cli.incidents import advise

        advise(connection(server, token, context, timeout), run)


@incidents_app.command("export")
def incidents_export(
    output: Annotated[
        str, typer.Option("--format", "-o", help="json, csv or html (a standalone report).")
    ] = "json",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Export every run with its timeline (json, html) or one line per run (csv)."""
    with cli_errors():
        from turnout.cli.incidents import export

        export(connection(server, token, context, timeout), output)


@runbook_app.command("apply")
def runbook_apply(
    file: Annotated[Path, typer.Option("--filename", "-f", help="A Runbook manifest.")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Create or update Runbooks from a file (each write is a stored revision)."""
    with cli_errors():
        from turnout.cli.incidents import apply_runbooks

        apply_runbooks(connection(server, token, context, timeout), file)


@runbook_app.command("test")
def runbook_test(
    label: Annotated[
        list[str], typer.Option("--label", "-l", help="An alert label KEY=VALUE (repeatable).")
    ],
    resolved: Annotated[bool, typer.Option("--resolved", help="A resolved alert.")] = False,
    last: Annotated[
        str,
        typer.Option(
            "--last",
            help="Also say what each step would have changed on the requests recorded in "
            "this window (the server's access-log ring), e.g. 5m; '' to skip.",
        ),
    ] = "5m",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Replay a sample alert in dry-run: print the plan of every runbook it would start
    and what it would have changed on the last minutes of recorded traffic."""
    with cli_errors():
        from turnout.cli.incidents import test_alert

        test_alert(connection(server, token, context, timeout), label, resolved, last)


@runbook_app.command("history")
def runbook_history(
    name: Annotated[str, typer.Argument(help="The Runbook, NAMESPACE/NAME or NAME.")],
    output: FormatOpt = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """The runs of one Runbook, newest first."""
    with cli_errors():
        from turnout.cli.incidents import runbook_history as run

        run(connection(server, token, context, timeout), name, output)


@runbook_app.command("new")
def runbook_new(
    for_alert: Annotated[
        str, typer.Option("--for-alert", help="The alert name (alertname label) it answers.")
    ],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Its namespace.")] = "default",
) -> None:
    """Print a Runbook skeleton for an alert (shed the route, verify, notify): edit, apply."""
    with cli_errors():
        from turnout.cli.incidents import new_runbook

        new_runbook(for_alert, namespace)


@runbook_app.command("rank")
def runbook_rank(
    label: Annotated[
        list[str], typer.Option("--label", "-l", help="An alert label KEY=VALUE (repeatable).")
    ],
    server: ServerOpt = None,
    token: TokenOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Rank the Runbooks for a sample alert by past effectiveness and similarity."""
    with cli_errors():
        from turnout.cli.incidents import rank

        rank(connection(server, token, context, timeout), label)
