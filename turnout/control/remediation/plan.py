"""Planning a run: a Runbook and an alert → the run's target, its rendered steps, its keys.

Strings in ``target`` and in step ``params`` may name the alert's labels as ``{label}``
(plus ``{namespace}``, the Runbook's namespace, when the alert has no such label); a
missing label makes planning fail with its name, so a run never acts on a half-filled
target. The run's idempotency key is (runbook, fingerprint, startsAt): duplicate and
re-sent deliveries of one firing alert plan one run.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from typing import Any

from turnout.config.model.remediation import RunbookSpec
from turnout.control.store.remediation_records import DRY_RUN, PENDING, AlertRecord, RunRecord
from turnout.core.durations import parse_duration

RISK_ORDER = {"low": 0, "medium": 1, "high": 2, "never": 3}


class PlanError(ValueError):
    pass


def render(value: Any, labels: dict[str, str]) -> Any:
    """``value`` with every ``{label}`` in its strings filled from ``labels``."""
    if isinstance(value, str):
        names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        missing = [n for n in names if n not in labels]
        if missing:
            raise PlanError(f"the alert has no label {missing[0]!r} (used in {value!r})")
        return value.format_map(labels)
    if isinstance(value, list):
        return [render(v, labels) for v in value]
    if isinstance(value, dict):
        return {k: render(v, labels) for k, v in value.items()}
    return value


def needs_approval(
    spec: RunbookSpec, index: int, labels: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """The approval a step needs (roles, expiry), or None: its own ``approval``, else by
    its risk against the bar of the alert's environment (``approvals.environments``) or
    the Runbook's ``approveRisk``."""
    step = spec.steps[index]
    if step.approval is not None:
        return {"roles": list(step.approval.roles), "expiry": step.approval.expiry}
    policy = spec.approvals
    env = (labels or {}).get(policy.environment_label)
    rule = policy.environments.get(env) if env is not None else None
    bar: str = spec.approve_risk
    roles, expiry = policy.roles, policy.expiry
    if rule is not None:
        bar, roles, expiry = rule.risk, rule.roles, rule.expiry
    if RISK_ORDER[step.risk] >= RISK_ORDER[bar]:
        out: dict[str, Any] = {"roles": list(roles), "expiry": expiry}
        if env is not None:
            out["environment"] = env
        return out
    return None


def plan_run(
    namespace: str,
    name: str,
    version: int,
    spec: RunbookSpec,
    alert: AlertRecord,
    now: float,
    *,
    dry_run: bool = False,
) -> RunRecord:
    labels = {"namespace": namespace, **alert.labels}
    target = render(spec.target, labels)
    steps: list[dict[str, Any]] = []
    for i, step in enumerate(spec.steps):
        skip = step.when is not None and any(
            alert.labels.get(k) != v for k, v in step.when.labels.items()
        )
        steps.append(
            {
                "name": step.name,
                "action": step.action,
                "params": render(step.params, labels),
                "timeout": parse_duration(step.timeout),
                "retries": step.retries,
                "backoff": parse_duration(step.backoff),
                "skip": skip,
                "approval": needs_approval(spec, i, alert.labels),
            }
        )
    dry = dry_run or spec.dry_run
    raw = "\x1f".join(
        (namespace, name, alert.fingerprint, alert.starts_at.isoformat(), alert.status)
    )
    key = hashlib.sha256(raw.encode()).hexdigest()
    return RunRecord(
        id="run-" + secrets.token_hex(6),
        idempotency_key=key if not dry_run else "dry-" + secrets.token_hex(16),
        runbook_namespace=namespace,
        runbook_name=name,
        runbook_version=version,
        target=target[:253],
        state=PENDING if not dry else DRY_RUN,
        next_at=now,
        deadline_at=now + parse_duration(spec.deadline),
        finished_at=now if dry else None,
        dry_run=dry,
        plan=steps,
        timeline=[{"at": now, "event": "planned" if dry else "created", "detail": alert.alertname}],
        reason="dry run: planned only" if dry else "",
    )
