"""``cli_errors``: one line and an exit code, except under ``TURNOUT_DEBUG=1``."""

from __future__ import annotations

import pytest
import typer

from turnout.cli.errors import CliError, ServerProblem, ValidationFailed, cli_errors


def test_cli_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exc, cli_errors():
        raise CliError("nope")
    assert exc.value.exit_code == 1
    assert capsys.readouterr().err == "error: nope\n"


def test_validation_problems_then_summary(capsys: pytest.CaptureFixture[str]) -> None:
    problems = [ServerProblem("a.yaml", 1, 2, "spec", "bad", "Backend default/x")]
    with pytest.raises(typer.Exit) as exc, cli_errors(error_exit=2):
        raise ValidationFailed("1 validation error(s)", problems)
    assert exc.value.exit_code == 2
    assert capsys.readouterr().err == (
        "a.yaml:1:2: Backend default/x: spec: bad\nerror: 1 validation error(s)\n"
    )


def test_unexpected_errors_are_one_line_without_debug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TURNOUT_DEBUG", raising=False)
    with pytest.raises(typer.Exit), cli_errors():
        raise KeyError("boom")
    assert capsys.readouterr().err == (
        "error: internal error: KeyError: 'boom' (set TURNOUT_DEBUG=1 for a traceback)\n"
    )


def test_debug_re_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_DEBUG", "1")
    with pytest.raises(KeyError), cli_errors():
        raise KeyError("boom")


def test_typer_exits_pass_through() -> None:
    with pytest.raises(typer.Exit) as exc, cli_errors():
        raise typer.Exit(3)
    assert exc.value.exit_code == 3
