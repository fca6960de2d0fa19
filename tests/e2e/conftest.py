"""The real CLI against a real ``turnout serve``.

``cli(*args)`` runs the Typer app in-process (``CliRunner``: the same code path as the
``turnout`` entry point, minus interpreter start-up) with an environment that points the
CLI at the test server the way a user's machine would: ``TURNOUT_SERVER`` names the admin
address and ``TURNOUT_DATA_DIR`` the server's data dir, so the bootstrap token is found
automatically. ``TURNOUT_DEBUG=1`` makes programming errors raise instead of printing one
line. Subprocess tests (``test_cli_process.py``) cover the entry point itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import ServeFactory
from turnout.cli.main import app
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import dump, gateway

CLEARED = ("TURNOUT_TOKEN", "TURNOUT_CONTEXT", "TURNOUT_CONFIG", "XDG_DATA_HOME", "NO_COLOR")


@dataclass(frozen=True, slots=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class Cli:
    """Runs ``turnout ARGS`` against one server; ``env`` adds or (with None) removes vars."""

    def __init__(self, proc: TurnoutProcess, home: Path) -> None:
        self.proc = proc
        self.home = home
        self.env: dict[str, str | None] = {
            "TURNOUT_SERVER": proc.admin,
            "TURNOUT_DATA_DIR": str(proc.data_dir),
            "XDG_CONFIG_HOME": str(home / "config"),
            "TURNOUT_DEBUG": "1",
            **dict.fromkeys(CLEARED),
        }

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> Run:
        result = CliRunner().invoke(
            app, list(args), input=input, env={**self.env, **(env or {})}, catch_exceptions=False
        )
        return Run(result.exit_code, result.stdout, result.stderr)

    def ok(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> str:
        run = self(*args, input=input, env=env)
        assert run.code == 0, f"turnout {' '.join(args)} -> {run.code}\n{run.out}\n{run.err}"
        return run.out


CliFactory = Callable[[TurnoutProcess], Cli]


def gateway_config(name: str = "gw") -> str:
    return dump(gateway(name=name, port=free_port()))


@pytest.fixture(scope="module")
def server(serve_module: ServeFactory) -> TurnoutProcess:
    """One server per test module; the Gateway ``gw`` comes from a file."""
    return serve_module(gateway_config())


@pytest.fixture(scope="module")
def cli(server: TurnoutProcess, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(server, tmp_path_factory.mktemp("home"))
