"""The ``turnout`` entry point as a user runs it: a new interpreter per command.

Every client command stays a thin client: it loads none of the server side (the admin
app, the store, the data plane), which is what keeps a command's start-up short (timings
are not asserted: they measure the machine, not the code); failures must be one line on
stderr with a non-zero exit code, never a traceback; and the modules loaded by
``turnout version`` / ``--help`` must not pull in httpx or PyYAML.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump

# What a client command must never load: the server side of Turnout and its libraries.
SERVER_SIDE = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "asyncpg", "aiosqlite")
SERVER_PACKAGES = ("turnout.control", "turnout.proxy", "turnout.supervisor")


def _env(proc: TurnoutProcess | None, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TURNOUT_TOKEN", "TURNOUT_CONTEXT", "TURNOUT_CONFIG", "TURNOUT_DEBUG")
    }
    env["XDG_CONFIG_HOME"] = str(home)
    if proc is not None:
        env["TURNOUT_SERVER"] = proc.admin
        env["TURNOUT_DATA_DIR"] = str(proc.data_dir)
    return env


def turnout(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> tuple[int, str, str, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "turnout", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    # -X importtime reports on stderr: keep those lines apart from what the command said.
    lines = proc.stderr.splitlines(keepends=True)
    imported = [ln for ln in lines if ln.startswith("import time:")]
    err = "".join(ln for ln in lines if not ln.startswith("import time:"))
    LOADED[" ".join(args)] = {ln.rsplit("|", 1)[-1].strip() for ln in imported}
    return proc.returncode, proc.stdout, err, time.monotonic() - start


LOADED: dict[str, set[str]] = {}  # command -> modules it imported (from -X importtime)


def test_every_client_command_stays_a_thin_client(
    server: TurnoutProcess, cli: Cli, tmp_path: Path
) -> None:
    env = _env(server, tmp_path)
    f = tmp_path / "be.yaml"
    f.write_text(dump(backend("timed", 9, namespace="proc")))
    commands = [
        ["version"],
        ["--help"],
        ["apply", "-f", str(f), "-m", "timed"],
        ["get", "backends", "-n", "proc"],
        ["get", "all", "-A", "-o", "wide"],
        ["get", "be", "timed", "-n", "proc", "-o", "yaml"],
        ["describe", "be", "timed", "-n", "proc"],
        ["diff", "-f", str(f)],
        ["history"],
        ["token", "list"],
        ["audit", "--limit", "20"],
        ["status"],
        ["whoami"],
        ["delete", "-f", str(f)],
    ]
    times = {}
    for args in commands:
        code, out, err, took = turnout(*args, env=env)
        assert code == 0, f"turnout {' '.join(args)} -> {code}\n{out}\n{err}"
        assert err == ""
        times[" ".join(args[:2])] = took
        loaded = LOADED[" ".join(args)]
        server = sorted(
            m
            for m in loaded
            if m in SERVER_SIDE or any(m == p or m.startswith(p + ".") for p in SERVER_PACKAGES)
        )
        assert server == [], f"turnout {' '.join(args)} loaded the server side: {server}"
    print("seconds per command (start-up included):", times)


def test_help_and_version_do_not_load_the_client_libraries(tmp_path: Path) -> None:
    env = _env(None, tmp_path)
    for args in (["version"], ["get", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "turnout", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
        assert "turnout.cli.commands" in imported
        assert not {"httpx", "yaml", "turnout.cli.client", "turnout.cli.output"} & imported


def test_connection_refused_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    env = _env(None, tmp_path)
    code, out, err, _ = turnout("get", "backends", "--server", f"127.0.0.1:{port}", env=env)
    assert (code, out) == (1, "")
    assert err == (
        f"error: cannot reach the Turnout admin API at http://127.0.0.1:{port} "
        "(connection refused); is `turnout serve` running?\n"
    )


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_timeout_is_one_line(silent_server: int, tmp_path: Path) -> None:
    env = _env(None, tmp_path)
    code, _, err, took = turnout(
        "status", "--server", f"127.0.0.1:{silent_server}", "--timeout", "0.3", env=env
    )
    assert code == 1
    assert err == (
        f"error: the Turnout admin API at http://127.0.0.1:{silent_server} did not answer "
        "within 0.3 s (--timeout)\n"
    )
    # Bounded, not timed: without --timeout the call would wait for the 30 s subprocess limit.
    assert took < 10


def test_server_errors_never_print_tracebacks(server: TurnoutProcess, tmp_path: Path) -> None:
    env = _env(server, tmp_path)
    cases = [
        (["get", "route", "nope"], 1, "error: HTTPRoute default/nope not found\n"),
        (["delete", "gateway", "gw"], 1, "managed by file"),
        (["get", "be", "--token", "garbage"], 1, "rejected the token from --token"),
        (["apply", "-f", "-"], 1, "invalid YAML"),
        (["get", "be", "--server", "ftp://x"], 1, "invalid server URL 'ftp://x' from --server"),
        (["get", "be", "--timeout", "0"], 2, "--timeout"),
    ]
    for args, want_code, want in cases:
        code, out, err, _ = turnout(*args, env=env, stdin="kind: [\n")
        assert code == want_code, (args, err)
        assert want in err, (args, err)
        assert "Traceback" not in err + out
