"""Effectiveness recorded from finished runs ranks Runbooks for the next incident,
deterministically: past success first, then how closely the Runbook matches."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.remediation.harness import Bench, alert_payload, runbook_spec
from turnout.config.model.remediation import RunbookSpec
from turnout.control.remediation.ranking import Outcome, rank
from turnout.control.store.remediation_records import AlertRecord


def test_outcomes_of_runs_rank_the_runbooks(tmp_path: Path) -> None:
    async def main() -> None:
        b = await Bench.open(tmp_path)
        greedy = [
            {"name": "a", "action": "shed", "params": {"route": "{route}", "percent": 30}},
            {"name": "b", "action": "shed", "params": {"route": "{route}", "percent": 30}},
        ]
        b.control.put("Runbook", "works", runbook_spec(target="{route}-works"))
        b.control.put("Runbook", "fails", runbook_spec(steps=greedy, target="{route}-fails"))
        await b.deliver(alert_payload(b.ago(5)))
        await b.tick()
        assert sorted(r.state for r in await b.runs()) == ["failed", "succeeded"]
        outcomes = await b.store.outcomes()
        assert sorted(o[2:4] for o in outcomes) == [("fails", "failed"), ("works", "succeeded")]
        history = [Outcome(a, f"{ns}/{n}", act, s == "succeeded") for a, ns, n, s, act in outcomes]
        books = {
            f"default/{k[2]}": RunbookSpec.model_validate(o.spec)
            for k, o in b.control.stored.items()
            if k[0] == "Runbook"
        }
        alert = (await b.deliver(alert_payload(b.ago(1), fingerprint="fp9"))).runs[0]
        record = await b.store.alert(alert.alert_id)
        ranked = rank(books, record, history)
        assert [(r.runbook, r.effective, r.runs, r.matches) for r in ranked] == [
            ("default/works", 1, 1, True),
            ("default/fails", 0, 1, True),
        ]
        assert ranked[0].score == round(0.6 * 2 / 3 + 0.4, 4)
        await b.store.close()

    asyncio.run(main())


def test_similarity_breaks_ties_between_untried_runbooks() -> None:
    def book(labels: dict[str, str]) -> RunbookSpec:
        return RunbookSpec.model_validate(
            {"match": {"labels": labels}, "steps": [{"name": "s", "action": "shed"}]}
        )

    alert = AlertRecord(
        "k", "g", "fp", "firing", "X", {"alertname": "X", "team": "a"}, {}, None, None
    )  # type: ignore[arg-type]
    books = {
        "ops/near": book({"alertname": "X", "team": "b"}),
        "ops/exact": book({"alertname": "X"}),
        "ops/far": book({"alertname": "Y", "team": "b"}),
    }
    ranked = rank(books, alert, [])
    assert [(r.runbook, r.similarity) for r in ranked] == [
        ("ops/exact", 1.0),
        ("ops/near", round(1 - 1 / 3, 4)),
        ("ops/far", round(1 - 2 / 3, 4)),
    ]
