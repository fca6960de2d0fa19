"""Remediation runs ("incidents") and approvals: list, show, approve, deny, cancel, test.

- ``GET /incidents`` (``active``, ``runbook=ns/name``, ``target``, ``limit``), ``GET
  /incidents/approvals`` (runs waiting for an approval), ``GET /incidents/{id}`` (plan,
  timeline and alert);
- ``POST /incidents/{id}/approve|deny|cancel``: approve needs one of the roles the step
  names; deny and cancel need editor. Each decision is audited and races the engine
  safely (the run is written only if it is still in the state the decision was made on);
- ``POST /remediation/test``: plan a sample alert in dry-run against the stored Runbooks
  (nothing is stored) and say which runbook would run, or the closest miss;
- ``POST /remediation/rank``: the stored Runbooks ranked for a sample alert by past
  effectiveness and similarity (``ranking``);
- ``GET /remediation/breakers``: the circuit breakers' states and transitions;
- ``POST /incidents/{id}/advice``: the optional advisor model's advice on a run
  (``advisor``; advice only, through its circuit breaker).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import ValidationError

from turnout.control.api.deps import Control, Editor, Viewer, forbid, remote_of
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.api.writes import commit
from turnout.control.auth import Principal, Role
from turnout.control.remediation import decisions
from turnout.control.remediation.advisor import AdvisorError, AdvisorSettings, advise
from turnout.control.remediation.breaker import Breakers
from turnout.control.remediation.decisions import DecisionError
from turnout.control.remediation.engine import remediation_breakers
from turnout.control.remediation.intake import RUNBOOK, plan_for, run_json, runbooks
from turnout.control.remediation.ranking import Outcome, rank
from turnout.control.service import ControlPlane
from turnout.control.store.errors import Conflict
from turnout.control.store.remediation_records import WAITING, AlertRecord, RunRecord
from turnout.core.clock import utcnow

router = APIRouter(tags=["remediation"], responses=FAILURES)
ENGINE = "remediation"


@router.get("/incidents")
async def list_incidents(
    control: Control,
    principal: Viewer,
    active: bool | None = None,
    runbook: Annotated[str | None, Query(pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$")] = None,
    target: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> dict[str, Any]:
    book = tuple(runbook.split("/", 1)) if runbook else None
    runs = await control.store.runs(active=active, runbook=book, target=target, limit=limit)  # type: ignore[arg-type]
    visible = [r for r in runs if principal.sees_namespace(r.runbook_namespace)]
    return {"items": [run_json(r) for r in visible]}


@router.get("/incidents/approvals")
async def pending_approvals(control: Control, principal: Viewer) -> dict[str, Any]:
    runs = await control.store.runs(active=True)
    waiting = [
        r for r in runs if r.state == WAITING and principal.sees_namespace(r.runbook_namespace)
    ]
    return {"items": [run_json(r) for r in waiting]}


@router.get("/incidents/{run_id}")
async def show_incident(run_id: str, control: Control, principal: Viewer) -> dict[str, Any]:
    run = await _visible(control, principal, run_id)
    out = run_json(run, full=True)
    alert = await control.store.alert(run.alert_id)
    out["alertDetail"] = {
        "alertname": alert.alertname,
        "status": alert.status,
        "fingerprint": alert.fingerprint,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": alert.starts_at.isoformat(),
        "deliveries": alert.deliveries,
        "source": alert.source,
    }
    return out


async def _visible(control: ControlPlane, principal: Principal, run_id: str) -> RunRecord:
    run = await control.store.run(run_id)
    if not principal.sees_namespace(run.runbook_namespace):
        raise ApiError(404, f"run {run_id!r} not found")
    return run


async def _decide(
    control: ControlPlane,
    request: Request,
    principal: Principal,
    run_id: str,
    decision: Callable[[RunRecord, str, float], str],
    action: str,
) -> dict[str, Any]:
    run = await _visible(control, principal, run_id)
    if action == "approve" and run.state == WAITING and run.approval is not None:
        roles = [Role.parse(r) for r in run.approval.get("roles", ["admin"])]
        if not any(principal.may(r) for r in roles):
            names = ", ".join(r.label for r in roles)
            await forbid(control, request, principal, f"approving run {run_id} needs role {names}")
    try:
        expect = decision(run, principal.actor, control.store.clock.time())
    except DecisionError as exc:
        raise ApiError(409, str(exc)) from None
    try:
        await control.store.save_run(run, expect_state=expect)
    except Conflict:
        raise ApiError(409, f"run {run.id} changed meanwhile; look again") from None
    await control.audit(principal, action, "ok", f"run {run.id}", run.reason, remote_of(request))
    control.reconcile.poke(ENGINE, (RUNBOOK, run.runbook_namespace, run.runbook_name))
    return run_json(run)


@router.post("/incidents/{run_id}/approve")
async def approve(
    run_id: str, request: Request, control: Control, principal: Viewer
) -> dict[str, Any]:
    return await _decide(control, request, principal, run_id, decisions.approve, "approve")


@router.post("/incidents/{run_id}/deny")
async def deny(
    run_id: str, request: Request, control: Control, principal: Editor
) -> dict[str, Any]:
    return await _decide(control, request, principal, run_id, decisions.deny, "deny")


@router.post("/incidents/{run_id}/cancel")
async def cancel(
    run_id: str, request: Request, control: Control, principal: Editor
) -> dict[str, Any]:
    """Cancel an active run and revert its Mitigations (or, for a finished run, only
    revert the Mitigations it still has in force)."""
    run = await _visible(control, principal, run_id)
    undo = decisions.revert_changes(control.stored.values(), run.id)
    if run.active:
        out = await _decide(control, request, principal, run_id, decisions.cancel, "cancel")
    elif not undo:
        raise ApiError(409, f"run {run.id} is {run.state} and has no mitigation in force")
    if undo:
        target = f"run {run.id}"
        message = f"cancel {target}: revert its mitigations"
        await commit(
            control,
            request,
            principal,
            undo,
            action="revert",
            target=target,
            message=message,
            dry_run=False,
        )
    names = [c.name for c in undo]
    if not run.active:
        now = control.store.clock.time()
        expect = decisions.reverted(run, principal.actor, now, names)
        await control.store.save_run(run, expect_state=expect)
        out = run_json(run)
    return {**out, "reverted": names}


@router.post("/remediation/test")
async def test_alert(
    control: Control,
    principal: Viewer,
    alert: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """Plan a sample alert (``{"labels", "annotations", "status"}``) in dry-run."""
    labels = alert.get("labels")
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ApiError(422, "labels: must be an object of strings")
    annotations = alert.get("annotations") or {}
    status = alert.get("status", "firing")
    if status not in ("firing", "resolved"):
        raise ApiError(422, "status: must be 'firing' or 'resolved'")
    clock = control.store.clock
    record = AlertRecord(
        dedup_key="test",
        group_key="test",
        fingerprint=str(alert.get("fingerprint", "test")),
        status=status,
        alertname=labels.get("alertname", ""),
        labels=labels,
        annotations=annotations if isinstance(annotations, dict) else {},
        starts_at=utcnow(clock),
        ends_at=None,
        source="test",
    )
    books = {k: v for k, v in runbooks(control.stored).items() if principal.sees_namespace(k[1])}
    try:
        runs, miss = plan_for(books, record, clock.time(), dry_run=True)
    except ValidationError as exc:  # pragma: no cover - specs were validated when stored
        raise ApiError(422, str(exc)) from None
    return {"runs": [run_json(r, full=True) for r in runs], "message": miss}


@router.get("/remediation/breakers")
async def breakers(control: Control, principal: Viewer) -> dict[str, Any]:
    found = remediation_breakers(control)
    return {"items": found.snapshot() if found is not None else []}


@router.post("/remediation/rank")
async def rank_runbooks(
    control: Control,
    principal: Viewer,
    alert: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """Rank the stored Runbooks for a sample alert by past effectiveness and similarity."""
    labels = alert.get("labels")
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ApiError(422, "labels: must be an object of strings")
    return {"items": await _ranked(control, principal, labels)}


async def _ranked(
    control: ControlPlane, principal: Principal, labels: dict[str, str]
) -> list[dict[str, Any]]:
    record = AlertRecord(
        dedup_key="rank",
        group_key="rank",
        fingerprint="rank",
        status="firing",
        alertname=labels.get("alertname", ""),
        labels=labels,
        annotations={},
        starts_at=utcnow(control.store.clock),
        ends_at=None,
    )
    books = {
        f"{k[1]}/{k[2]}": spec
        for k, (_, spec) in runbooks(control.stored).items()
        if principal.sees_namespace(k[1])
    }
    history = [
        Outcome(alertname, f"{ns}/{name}", action, state == "succeeded")
        for alertname, ns, name, state, action in await control.store.outcomes()
    ]
    return [
        {
            "runbook": r.runbook,
            "action": r.action,
            "score": r.score,
            "effective": r.effective,
            "runs": r.runs,
            "similarity": r.similarity,
            "matches": r.matches,
        }
        for r in rank(books, record, history)
    ]


@router.post("/incidents/{run_id}/advice")
async def advice(run_id: str, control: Control, principal: Editor) -> dict[str, Any]:
    """Ask the configured advisor model about a run (advice only: nothing is changed)."""
    try:
        settings = AdvisorSettings.from_env()
    except AdvisorError as exc:
        raise ApiError(409, str(exc)) from None
    if settings is None:
        raise ApiError(409, "no advisor is configured: set TURNOUT_ADVISOR_URL on the server")
    run = await show_incident(run_id, control, principal)
    labels = run["alertDetail"]["labels"]
    candidates = await _ranked(control, principal, labels)
    engine = remediation_breakers(control)
    breakers = engine if engine is not None else Breakers()
    try:
        text = await advise(settings, breakers, run, candidates)
    except AdvisorError as exc:
        raise ApiError(503, f"no advice: {exc}") from None
    return {"run": run_id, "model": settings.model, "advice": text, "advisory": True}
