"""Alert parsing (delivery key, stale refusal), Runbook matching and the closest miss,
planning (label placeholders, approvals by risk), the Runbook model's errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from turnout.config.model.remediation import AlertMatch, RunbookSpec
from turnout.control.remediation.alertmanager import WebhookPayload, delivery_key, records
from turnout.control.remediation.matching import Candidate, closest, differences, matching
from turnout.control.remediation.plan import PlanError, plan_run, render
from turnout.control.store.remediation_records import AlertRecord

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def payload(*alerts: dict[str, object], group: str = "g1") -> WebhookPayload:
    return WebhookPayload.model_validate(
        {"version": "4", "groupKey": group, "status": "firing", "alerts": list(alerts)}
    )


def am_alert(
    fp: str = "a", status: str = "firing", age: float = 10, **labels: str
) -> dict[str, object]:
    return {
        "status": status,
        "labels": {"alertname": "HighErrorRate", **labels},
        "startsAt": (NOW - timedelta(seconds=age)).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fp,
        "someFutureField": 1,  # Alertmanager adds fields over time: ignored
    }


def alert(status: str = "firing", **labels: str) -> AlertRecord:
    return AlertRecord(
        dedup_key="k",
        group_key="g",
        fingerprint="fp",
        status=status,
        alertname=labels.get("alertname", ""),
        labels=labels,
        annotations={"runbook": "https://wiki/x"},
        starts_at=NOW,
        ends_at=None,
    )


def test_the_delivery_key_is_group_fingerprint_status_and_start() -> None:
    kept, refused = records(payload(am_alert("a"), am_alert("b")), NOW)
    assert refused == [] and [a.fingerprint for a in kept] == ["a", "b"]
    again, _ = records(payload(am_alert("a")), NOW)
    assert again[0].dedup_key == kept[0].dedup_key
    resolved, _ = records(payload(am_alert("a", status="resolved")), NOW)
    assert resolved[0].dedup_key != kept[0].dedup_key
    assert kept[0].ends_at is None  # Alertmanager's zero time means "not ended"
    assert kept[0].dedup_key == delivery_key("g1", "a", "firing", kept[0].starts_at)


def test_stale_and_future_alerts_are_refused_with_a_reason() -> None:
    old = am_alert("old", age=2 * 3600)
    future = am_alert("future", age=-600)
    kept, refused = records(payload(old, future, am_alert("ok")), NOW)
    assert [a.fingerprint for a in kept] == ["ok"]
    assert [r.fingerprint for r in refused] == ["old", "future"]
    assert "longer than 1:00:00 ago" in refused[0].reason
    assert "in the future" in refused[1].reason


def test_a_malformed_payload_names_the_field() -> None:
    with pytest.raises(ValidationError, match="version"):
        WebhookPayload.model_validate(
            {"version": "3", "groupKey": "g", "status": "firing", "alerts": []}
        )
    with pytest.raises(ValidationError, match="fingerprint"):
        payload({"status": "firing", "labels": {}, "startsAt": NOW.isoformat()})


def test_matching_is_equality_and_full_regex_firing_only() -> None:
    m = AlertMatch.model_validate(
        {"labels": {"alertname": "HighErrorRate"}, "labelsRegex": {"route": "check.*"}}
    )
    assert differences(m, alert(alertname="HighErrorRate", route="checkout")) == []
    assert differences(m, alert(alertname="HighErrorRate", route="xcheckout")) == [
        "label route differs: want /check.*/, alert has 'xcheckout'"
    ]
    assert (
        "resolved"
        in differences(m, alert("resolved", alertname="HighErrorRate", route="checkout"))[0]
    )
    both = AlertMatch.model_validate({"labels": {"alertname": "HighErrorRate"}, "resolved": True})
    assert differences(both, alert("resolved", alertname="HighErrorRate")) == []
    by_annotation = AlertMatch.model_validate({"annotationsRegex": {"runbook": "https://wiki/.*"}})
    assert differences(by_annotation, alert()) == []


def test_the_closest_miss_says_what_differs() -> None:
    a = Candidate("default", "a", AlertMatch.model_validate({"labels": {"team": "x", "env": "y"}}))
    b = Candidate("ops", "b", AlertMatch.model_validate({"labels": {"team": "checkout"}}))
    got = alert(alertname="HighErrorRate", team="payments")
    assert matching([a, b], got) == []
    assert closest([a, b], got) == (
        "no runbook matches; closest is ops/b: label team differs: "
        "want 'checkout', alert has 'payments'"
    )
    assert closest([], got) == "no runbook matches (no runbooks are defined)"


def spec(**extra: object) -> RunbookSpec:
    return RunbookSpec.model_validate(
        {
            "match": {"labels": {"alertname": "HighErrorRate"}},
            "target": "{namespace}/{route}",
            "steps": [
                {"name": "shed", "action": "shed", "params": {"route": "{route}", "percent": 10}},
                {
                    "name": "page",
                    "action": "notify_webhook",
                    "risk": "high",
                    "when": {"labels": {"severity": "page"}},
                },
            ],
            **extra,
        }
    )


def test_a_plan_fills_labels_and_marks_approvals_and_skips() -> None:
    run = plan_run(
        "ops", "rb", 3, spec(), alert(alertname="HighErrorRate", route="checkout"), 100.0
    )
    assert run.target == "ops/checkout" and run.state == "pending"
    assert run.plan[0]["params"] == {"route": "checkout", "percent": 10}
    assert run.plan[0]["approval"] is None
    assert run.plan[1]["approval"] == {"roles": ["admin"], "expiry": "15m"}  # high risk
    assert run.plan[1]["skip"] is True  # severity is not "page"
    assert run.deadline_at == 100.0 + 600
    again = plan_run(
        "ops", "rb", 3, spec(), alert(alertname="HighErrorRate", route="checkout"), 200.0
    )
    assert again.idempotency_key == run.idempotency_key and again.id != run.id
    with pytest.raises(PlanError, match="the alert has no label 'route'"):
        plan_run("ops", "rb", 3, spec(), alert(alertname="HighErrorRate"), 100.0)
    assert render({"a": ["{x}-1", 2]}, {"x": "v"}) == {"a": ["v-1", 2]}


def test_runbook_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="labelsRegex"):
        RunbookSpec.model_validate(
            {"match": {"labelsRegex": {"a": "("}}, "steps": [{"name": "s", "action": "shed"}]}
        )
    with pytest.raises(ValidationError, match="steps"):
        RunbookSpec.model_validate({"match": {}, "steps": []})
    with pytest.raises(ValidationError, match="cooldown"):
        RunbookSpec.model_validate(
            {"match": {}, "cooldown": "soon", "steps": [{"name": "s", "action": "shed"}]}
        )
