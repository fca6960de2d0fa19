"""Records of the remediation tables: a received alert and a durable run.

Plain dataclasses, so the store stays free of the remediation logic above it. A run's
``plan`` is the list of its steps as rendered when it was created (a later change to the
Runbook does not change a run in flight); ``timeline`` is its append-only history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

# A run's states. Active ones are looked at by the engine; the rest are final.
PENDING: Final = "pending"
RUNNING: Final = "running"
WAITING: Final = "waiting_approval"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"
CANCELLED: Final = "cancelled"
DENIED: Final = "denied"
EXPIRED: Final = "expired"
DRY_RUN: Final = "planned"
ACTIVE_STATES: Final = (PENDING, RUNNING, WAITING)
FINAL_STATES: Final = (SUCCEEDED, FAILED, SKIPPED, CANCELLED, DENIED, EXPIRED, DRY_RUN)


@dataclass(slots=True)
class AlertRecord:
    dedup_key: str
    group_key: str
    fingerprint: str
    status: str  # firing | resolved
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    source: str = "alertmanager"
    id: int = 0
    received_at: datetime | None = None
    deliveries: int = 1


@dataclass(slots=True)
class RunRecord:
    id: str
    idempotency_key: str
    runbook_namespace: str
    runbook_name: str
    runbook_version: int
    target: str
    state: str
    next_at: float
    deadline_at: float
    dry_run: bool
    plan: list[dict[str, Any]]
    alert_id: int = 0
    reason: str = ""
    step: int = 0
    attempt: int = 0
    finished_at: float | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    approval: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def runbook(self) -> str:
        return f"{self.runbook_namespace}/{self.runbook_name}"
