"""``turnout --version`` and ``turnout version`` print the package version."""

from __future__ import annotations

from typer.testing import CliRunner

from turnout import __version__
from turnout.cli.main import app


def test_version_option_and_command() -> None:
    runner = CliRunner()
    for args in (["--version"], ["version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.output == f"{__version__}\n"


def test_no_arguments_still_prints_help() -> None:
    result = CliRunner().invoke(app, [])
    assert "Usage" in result.output
    assert "serve" in result.output
