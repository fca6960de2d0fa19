"""``history`` and ``rollback`` against a real server (its own store for this module)."""

from __future__ import annotations

import json

from tests.e2e.conftest import Cli
from turnout.testing.manifests import backend, dump


def _current(cli: Cli) -> int:
    return int(json.loads(cli.ok("history", "-o", "json"))["metadata"]["current"])


def test_history_lists_revisions_newest_first(cli: Cli) -> None:
    start = _current(cli)
    cli.ok("apply", "-f", "-", "-m", "add h1", input=dump(backend("h1", 9, namespace="hist")))
    cli.ok("apply", "-f", "-", "-m", "move h1", input=dump(backend("h1", 10, namespace="hist")))
    cli.ok("delete", "be", "h1", "-n", "hist")
    lines = cli.ok("history", "--limit", "3").splitlines()
    assert lines[0].split() == ["REVISION", "AGE", "ACTOR", "MESSAGE", "CHANGES"]
    rows = [ln.split(None, 4) for ln in lines[1:]]
    assert [int(r[0]) for r in rows] == [start + 3, start + 2, start + 1]
    assert rows[0][2] == "token:bootstrap-admin"
    assert " move h1   configured Backend hist/h1" in lines[2]
    assert " add h1    created Backend hist/h1" in lines[3]
    assert lines[1].endswith(" -         deleted Backend hist/h1")

    shown = cli.ok("history", str(start + 2))
    assert f"Revision:   {start + 2}" in shown
    assert "Message:    move h1" in shown
    assert "-  - address: 127.0.0.1:9" in shown and "+  - address: 127.0.0.1:10" in shown
    assert "Actor:      token:bootstrap-admin" in shown

    older = cli.ok("history", "--before", str(start + 2), "-o", "json")
    assert json.loads(older)["items"][0]["revision"] == start + 1


def test_rollback_restores_an_earlier_revision(cli: Cli) -> None:
    cli.ok("apply", "-f", "-", input=dump(backend("rb", 9, namespace="hist")))
    good = _current(cli)
    cli.ok("apply", "-f", "-", input=dump(backend("rb", 10, namespace="hist")))
    dry = cli.ok("rollback", str(good), "--dry-run")
    assert dry.splitlines() == [
        "backend.turnout.dev/rb configured (dry run)",
        f"would roll back to revision {good} as revision {good + 2}",
    ]
    assert "127.0.0.1:10" in cli.ok("get", "be", "rb", "-n", "hist")
    out = cli.ok("rollback", str(good), "-m", "bad port")
    assert out.splitlines()[-1] == f"rolled back to revision {good}: now at revision {good + 2}"
    assert "127.0.0.1:9" in cli.ok("get", "be", "rb", "-n", "hist")
    top = cli.ok("history", "--limit", "1").splitlines()[1]
    assert top.split()[0] == str(good + 2) and "bad port" in top
    again = cli.ok("rollback", str(good))
    assert again == f"revision {good} matches the current objects; nothing to roll back\n"


def test_rollback_errors_are_one_line(cli: Cli) -> None:
    run = cli("rollback", "9999")
    assert run.code == 1
    assert run.err.startswith("error: ") and len(run.err.splitlines()) == 1
    run = cli("rollback", "0")
    assert run.code == 2  # Typer refuses it: revisions start at 1
