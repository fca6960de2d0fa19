"""The alert intake: alerts → stored alerts and planned runs, in one store transaction.

``receive`` matches each kept alert against the stored Runbooks, plans one run per
matching Runbook (a run that cannot be planned, e.g. a label its target names is
missing, is stored as failed with the reason, so it shows in ``incidents list``) and
stores the alert with its runs. A duplicate delivery only counts: its runs were planned
by the first. The answer says per alert what happened, including why nothing matched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from turnout.config.model.remediation import RunbookSpec
from turnout.control.remediation.matching import Candidate, closest, matching
from turnout.control.remediation.plan import PlanError, plan_run
from turnout.control.store.records import ObjectKey, StoredObject
from turnout.control.store.remediation_records import FAILED, AlertRecord, RunRecord
from turnout.control.store.remediation_tables import RemediationTables

RUNBOOK = "Runbook"


@dataclass(slots=True)
class Intake:
    received: int = 0
    duplicates: int = 0
    runs: list[RunRecord] = field(default_factory=list)
    unmatched: list[dict[str, str]] = field(default_factory=list)
    runbooks: set[ObjectKey] = field(default_factory=set)  # to poke


def runbooks(
    objects: Mapping[ObjectKey, StoredObject],
) -> dict[ObjectKey, tuple[StoredObject, RunbookSpec]]:
    out = {}
    for key, obj in objects.items():
        if key[0] != RUNBOOK:
            continue
        try:
            out[key] = (obj, RunbookSpec.model_validate(obj.spec))
        except ValidationError:
            continue  # an invalid Runbook is reported on the object by validation
    return out


def plan_for(
    books: Mapping[ObjectKey, tuple[StoredObject, RunbookSpec]],
    alert: AlertRecord,
    now: float,
    *,
    dry_run: bool = False,
) -> tuple[list[RunRecord], str]:
    """Runs for ``alert`` and, when none matched, the closest miss in words."""
    specs = {(obj.namespace, obj.name): (obj, spec) for obj, spec in books.values()}
    candidates = [Candidate(ns, name, spec.match) for (ns, name), (_, spec) in specs.items()]
    runs = []
    for cand in matching(candidates, alert):
        obj, spec = specs[(cand.namespace, cand.name)]
        try:
            runs.append(
                plan_run(
                    obj.namespace, obj.name, obj.resource_version, spec, alert, now, dry_run=dry_run
                )
            )
        except PlanError as exc:
            run = plan_run(
                obj.namespace, obj.name, obj.resource_version, _unplannable(spec), alert, now
            )
            run.state, run.reason, run.finished_at = FAILED, f"cannot plan: {exc}", now
            runs.append(run)
    return runs, "" if runs else closest(candidates, alert)


def _unplannable(spec: RunbookSpec) -> RunbookSpec:
    # a copy with literal target and no params, only to record the failed run
    steps = [s.model_copy(update={"params": {}}) for s in spec.steps]
    return spec.model_copy(update={"target": "unplannable", "steps": tuple(steps)})


async def receive(
    store: RemediationTables,
    objects: Mapping[ObjectKey, StoredObject],
    alerts: list[AlertRecord],
    now: float,
) -> Intake:
    books = runbooks(objects)
    out = Intake()
    for alert in alerts:
        runs, miss = plan_for(books, alert, now)
        if await store.record_alert(alert, runs):
            out.received += 1
            out.runs.extend(runs)
            out.runbooks.update((RUNBOOK, r.runbook_namespace, r.runbook_name) for r in runs)
            if miss:
                out.unmatched.append({"fingerprint": alert.fingerprint, "reason": miss})
        else:
            out.duplicates += 1
    return out


def run_json(run: RunRecord, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": run.id,
        "runbook": run.runbook,
        "target": run.target,
        "state": run.state,
        "reason": run.reason,
        "step": run.step,
        "steps": len(run.plan),
        "dryRun": run.dry_run,
        "alert": run.alert_id,
        "createdAt": run.created_at.isoformat() if run.created_at else None,
        "approval": run.approval,
    }
    if full:
        out["plan"] = run.plan
        out["timeline"] = run.timeline
        out["deadlineAt"] = run.deadline_at
        out["finishedAt"] = run.finished_at
    return out
