"""One-line errors for the client commands, and the guard that prints them.

Everything a user can get wrong (server down, bad token, unknown kind, invalid manifest)
is raised as ``CliError`` with a message meant to be printed as ``error: <message>``.
``cli_errors()`` wraps every client command: it turns ``CliError`` into that line and an
exit code, and any other exception into one line too, unless ``TURNOUT_DEBUG=1`` asks for
the traceback (tests set it, so programming errors are not hidden). This module imports
only the standard library and typer: it is loaded by ``turnout --help``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer


class CliError(Exception):
    """A user-facing failure: ``message`` is one line; ``exit_code`` is non-zero."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status  # the HTTP status when the server refused the request


@dataclass(frozen=True, slots=True)
class ServerProblem:
    """One validation problem from a 422 response (fields as the API sends them)."""

    source: str
    line: int | None
    column: int | None
    path: str
    message: str
    object: str
    severity: str = "error"

    @classmethod
    def from_json(cls, raw: Any) -> ServerProblem:
        if not isinstance(raw, dict):
            return cls("", None, None, "", str(raw), "")

        def _int(v: Any) -> int | None:
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        return cls(
            str(raw.get("source") or ""),
            _int(raw.get("line")),
            _int(raw.get("column")),
            str(raw.get("path") or ""),
            str(raw.get("message") or ""),
            str(raw.get("object") or ""),
            "warning" if raw.get("severity") == "warning" else "error",
        )

    def __str__(self) -> str:
        where = self.source
        if where and self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [p for p in (where, self.object, self.path) if p]
        tag = "warning: " if self.severity == "warning" else ""
        return ": ".join([*parts, tag + self.message])


class ValidationFailed(CliError):
    """HTTP 422: the server refused the objects; ``problems`` are printed one per line."""

    def __init__(self, message: str, problems: list[ServerProblem]) -> None:
        super().__init__(message, status=422)
        self.problems = problems


def _debug() -> bool:
    return os.environ.get("TURNOUT_DEBUG", "") not in ("", "0", "false", "no")


@contextmanager
def cli_errors(error_exit: int | None = None) -> Iterator[None]:
    """Print failures as one line on stderr and exit non-zero; ``error_exit`` overrides
    the exit code of every error (``diff`` uses 2, since 1 means "differences")."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise  # typer's own exits and usage errors (printed by typer, exit 2)
    except ValidationFailed as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(error_exit or exc.exit_code) from None
    except CliError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(error_exit or exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # `turnout get ... | head`: the reader went away; say nothing.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter exit quiet
        except OSError:
            pass
        raise typer.Exit(error_exit or 1) from None
    except Exception as exc:
        if _debug():
            raise
        detail = str(exc).splitlines()[0] if str(exc) else ""
        typer.echo(
            f"error: internal error: {type(exc).__name__}"
            + (f": {detail}" if detail else "")
            + " (set TURNOUT_DEBUG=1 for a traceback)",
            err=True,
        )
        raise typer.Exit(error_exit or 1) from None
