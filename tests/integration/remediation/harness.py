"""A remediation engine over a real SQLite store, in-memory objects and a fake clock.

``Bench`` holds the store (runs, alerts), a ``MemoryControl`` (Runbooks, Mitigations,
commits) and a ``RemediationReconciler``; ``deliver`` goes through the real intake and
``tick`` calls the reconciler for every Runbook, as the leader's manager would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.unit.control.memory import MemoryControl
from turnout.control.reconcile.base import Context
from turnout.control.remediation.alertmanager import WebhookPayload, records
from turnout.control.remediation.breaker import Breakers
from turnout.control.remediation.engine import RemediationReconciler
from turnout.control.remediation.expiry import MitigationExpiryReconciler
from turnout.control.remediation.intake import Intake, receive
from turnout.control.store import Store, open_store
from turnout.control.store.records import Change
from turnout.control.store.remediation_records import RunRecord
from turnout.observe.metrics import Aggregate
from turnout.testing.clock import FakeClock

T0 = 1_800_000_000.0


class Commit:
    def __init__(self, control: MemoryControl, actor: str) -> None:
        self.control = control
        self.actor = actor

    async def __call__(self, changes: list[Change], *, message: str, action: str) -> None:
        await self.control.commit_as(self.actor, changes, message=message, action=action)


def runbook_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "match": {"labels": {"alertname": "HighErrorRate"}},
        "target": "{namespace}/{route}",
        "cooldown": "5m",
        "steps": [
            {"name": "shed", "action": "shed", "params": {"route": "{route}", "percent": 30}},
        ],
    }
    spec.update(overrides)
    return spec


def alert_payload(
    starts: datetime,
    *,
    status: str = "firing",
    labels: dict[str, str] | None = None,
    fingerprint: str = "fp1",
) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "turnout",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [
            {
                "status": status,
                "labels": labels or {"alertname": "HighErrorRate", "route": "checkout"},
                "annotations": {"summary": "5xx"},
                "startsAt": starts.isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom",
                "fingerprint": fingerprint,
            }
        ],
    }


@dataclass
class Bench:
    clock: FakeClock
    store: Store
    control: MemoryControl
    engine: RemediationReconciler
    breakers: Breakers = field(default_factory=Breakers)
    observed: Aggregate = field(default_factory=Aggregate)

    @classmethod
    async def open(cls, tmp: Path, clock: FakeClock | None = None) -> Bench:
        clock = clock or FakeClock(T0)
        store = await open_store(f"sqlite+aiosqlite:///{tmp / 'store.db'}", clock=clock)
        breakers = Breakers(clock, failure_threshold=2, reset_timeout=30.0)
        return cls(clock, store, MemoryControl(clock), RemediationReconciler(breakers), breakers)

    def context(self, actor: str = "remediation") -> Context:
        return Context(
            self.clock,
            Commit(self.control, actor),
            observe=lambda: self.observed,
            objects=self.control.objects,
            runs=self.store,
        )

    async def deliver(self, payload: dict[str, Any]) -> Intake:
        kept, refused = records(WebhookPayload.model_validate(payload), self.clock.now())
        assert not refused, refused
        return await receive(self.store, self.control.stored, kept, self.clock.time())

    async def tick(self) -> None:
        ctx = self.context()
        for key, obj in list(self.control.stored.items()):
            if key[0] == "Runbook":
                await self.engine.reconcile(obj, ctx)

    async def expire(self) -> None:
        ctx = self.context("mitigation-expiry")
        for key, obj in list(self.control.stored.items()):
            if key[0] == "Mitigation":
                await MitigationExpiryReconciler().reconcile(obj, ctx)

    async def runs(self) -> list[RunRecord]:
        return await self.store.runs()

    def mitigations(self) -> dict[str, dict[str, Any]]:
        return {k[2]: o.spec for k, o in self.control.stored.items() if k[0] == "Mitigation"}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def ago(self, seconds: float) -> datetime:
        return self.now() - timedelta(seconds=seconds)
