"""The shipped runbook catalogue (``deploy/runbooks/``) and ``runbook new`` skeletons are
valid manifests, and every action they name is registered with params it accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from turnout.cli.main import app
from turnout.config.model.remediation import RunbookObject
from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.control.remediation.actions import lookup
from turnout.control.remediation.plan import render

CATALOGUE = Path(__file__).resolve().parents[3] / "deploy" / "runbooks"
LABELS = {
    "alertname": "X",
    "route": "checkout",
    "client_ip": "192.0.2.1",
    "namespace": "default",
    "backend": "svc",
    "instance": "10.0.0.7:8080",
}


def runbooks(text: str, source: str) -> list[RunbookObject]:
    resources, problems = parse_text(text, source)
    assert problems == [], problems
    config, problems = validate(resources)
    assert problems == [], problems
    out = [r.obj for r in config.resources if isinstance(r.obj, RunbookObject)]
    assert out, f"{source} holds no Runbook"
    return out


def check_actions(book: RunbookObject) -> None:
    for step in book.spec.steps:
        lookup(step.action).parse(render(dict(step.params), LABELS))


@pytest.mark.parametrize("path", sorted(CATALOGUE.glob("*.yaml")), ids=lambda p: p.name)
def test_catalogue_runbooks_are_valid(path: Path) -> None:
    for book in runbooks(path.read_text(), str(path)):
        assert book.spec.dry_run, "catalogue runbooks start in dry-run"
        check_actions(book)


def test_runbook_new_prints_a_valid_skeleton() -> None:
    result = CliRunner().invoke(app, ["runbook", "new", "--for-alert", "HighErrorRate"])
    assert result.exit_code == 0, result.output
    (book,) = runbooks(result.stdout, "new.yaml")
    assert book.metadata.name == "high-error-rate"
    assert book.spec.match.labels == {"alertname": "HighErrorRate"}
    check_actions(book)
    bad = CliRunner().invoke(app, ["runbook", "new", "--for-alert", "no spaces"])
    assert bad.exit_code == 2
