"""The store's ``alerts`` and ``remediation_runs`` tables (``Store`` mixes these queries in).

``record_alert`` is the intake's one write: in one transaction it either counts another
delivery of a known alert (same delivery key) or inserts the alert and the runs planned
for it, skipping runs whose idempotency key exists already. The run engine reads active
runs and saves each run after every step (``save_run``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.control.store import tables as t
from turnout.control.store.connection import StoreBase
from turnout.control.store.errors import Conflict, NotFound
from turnout.control.store.remediation_records import (
    ACTIVE_STATES,
    AlertRecord,
    RunRecord,
)


class RemediationTables(StoreBase):
    async def record_alert(self, alert: AlertRecord, runs: Sequence[RunRecord]) -> bool:
        """Store ``alert`` and its ``runs``; False when it was a duplicate delivery (only
        counted). Sets ``alert.id``."""
        try:
            return await self._record_alert(alert, runs)
        except Conflict:
            # a concurrent delivery of the same alert won the insert: count this one
            return await self._record_alert(alert, runs)

    async def _record_alert(self, alert: AlertRecord, runs: Sequence[RunRecord]) -> bool:
        a = t.alerts
        now = self._now()
        with self._guard():
            async with self._transaction() as conn:
                row = (
                    await conn.execute(
                        select(a.c.id, a.c.deliveries).where(a.c.dedup_key == alert.dedup_key)
                    )
                ).first()
                if row is not None:
                    alert.id = int(row.id)
                    alert.deliveries = int(row.deliveries) + 1
                    await conn.execute(
                        update(a).where(a.c.id == row.id).values(deliveries=alert.deliveries)
                    )
                    return False
                values = {
                    "dedup_key": alert.dedup_key,
                    "group_key": alert.group_key,
                    "fingerprint": alert.fingerprint,
                    "status": alert.status,
                    "alertname": alert.alertname,
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "starts_at": alert.starts_at,
                    "ends_at": alert.ends_at,
                    "received_at": now,
                    "deliveries": 1,
                    "source": alert.source,
                }
                result = await conn.execute(insert(a).values(values).returning(a.c.id))
                alert.id = int(result.scalar_one())
                alert.received_at = now
                for run in runs:
                    run.alert_id = alert.id
                    await _insert_run(conn, run, now)
        return True

    async def alert(self, alert_id: int) -> AlertRecord:
        with self._guard():
            async with self._connection(self._engine) as conn:
                row = (
                    await conn.execute(select(t.alerts).where(t.alerts.c.id == alert_id))
                ).first()
        if row is None:
            raise NotFound(f"alert {alert_id} not found")
        return _alert(row._mapping)

    async def resolution(self, alert_id: int) -> datetime | None:
        """When the resolution of alert ``alert_id`` (same fingerprint and startsAt,
        status resolved) was first received; None while it is not."""
        a = t.alerts
        fired = select(a.c.fingerprint, a.c.starts_at).where(a.c.id == alert_id).subquery()
        query = (
            select(func.min(a.c.received_at))
            .join(fired, (a.c.fingerprint == fired.c.fingerprint))
            .where(a.c.starts_at == fired.c.starts_at, a.c.status == "resolved")
        )
        with self._guard():
            async with self._connection(self._engine) as conn:
                value = (await conn.execute(query)).scalar()
        return value if isinstance(value, datetime) else None

    async def runs(
        self,
        *,
        active: bool | None = None,
        runbook: tuple[str, str] | None = None,
        target: str | None = None,
        limit: int = 500,
    ) -> list[RunRecord]:
        """Runs, newest first, filtered by activity, runbook (namespace, name), target."""
        r = t.remediation_runs
        query = select(r).order_by(r.c.created_at.desc(), r.c.id.desc()).limit(limit)
        if active is not None:
            states = r.c.state.in_(ACTIVE_STATES)
            query = query.where(states if active else ~states)
        if runbook is not None:
            query = query.where(r.c.runbook_namespace == runbook[0], r.c.runbook_name == runbook[1])
        if target is not None:
            query = query.where(r.c.target == target)
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [_run(row._mapping) for row in rows]

    async def outcomes(self, limit: int = 5000) -> list[tuple[str, str, str, str, str]]:
        """(alertname, runbook namespace, name, state, first action) of the latest
        finished runs that acted (succeeded or failed)."""
        r, a = t.remediation_runs, t.alerts
        query = (
            select(a.c.alertname, r.c.runbook_namespace, r.c.runbook_name, r.c.state, r.c.plan)
            .join(a, a.c.id == r.c.alert_id)
            .where(r.c.state.in_(("succeeded", "failed")), r.c.dry_run.is_(False))
            .order_by(r.c.created_at.desc())
            .limit(limit)
        )
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [
            (row[0], row[1], row[2], row[3], str(row[4][0]["action"]) if row[4] else "")
            for row in rows
        ]

    async def run(self, run_id: str) -> RunRecord:
        r = t.remediation_runs
        with self._guard():
            async with self._connection(self._engine) as conn:
                row = (await conn.execute(select(r).where(r.c.id == run_id))).first()
        if row is None:
            raise NotFound(f"run {run_id!r} not found")
        return _run(row._mapping)

    async def add_run(self, run: RunRecord) -> None:
        with self._guard():
            async with self._transaction() as conn:
                await _insert_run(conn, run, self._now())

    async def save_run(self, run: RunRecord, *, expect_state: str | None = None) -> None:
        """Write a run's progress. With ``expect_state``, only if its stored state is
        still that one (an approval racing a deadline): ``Conflict`` otherwise."""
        r = t.remediation_runs
        now = self._now()
        query = update(r).where(r.c.id == run.id)
        if expect_state is not None:
            query = query.where(r.c.state == expect_state)
        values = {
            "state": run.state,
            "reason": run.reason,
            "step": run.step,
            "attempt": run.attempt,
            "next_at": run.next_at,
            "deadline_at": run.deadline_at,
            "finished_at": run.finished_at,
            "timeline": run.timeline,
            "approval": run.approval,
            "updated_at": now,
        }
        with self._guard():
            async with self._transaction() as conn:
                result = await conn.execute(query.values(values))
        if result.rowcount != 1:
            raise Conflict(f"run {run.id!r} changed meanwhile")
        run.updated_at = now


async def _insert_run(conn: AsyncConnection, run: RunRecord, now: Any) -> None:
    r = t.remediation_runs
    exists = (
        await conn.execute(select(r.c.id).where(r.c.idempotency_key == run.idempotency_key))
    ).first()
    if exists is not None:
        return
    run.created_at = run.updated_at = now
    await conn.execute(
        insert(r).values(
            id=run.id,
            idempotency_key=run.idempotency_key,
            runbook_namespace=run.runbook_namespace,
            runbook_name=run.runbook_name,
            runbook_version=run.runbook_version,
            alert_id=run.alert_id,
            target=run.target,
            state=run.state,
            reason=run.reason,
            step=run.step,
            attempt=run.attempt,
            next_at=run.next_at,
            deadline_at=run.deadline_at,
            finished_at=run.finished_at,
            dry_run=run.dry_run,
            plan=run.plan,
            timeline=run.timeline,
            approval=run.approval,
            created_at=now,
            updated_at=now,
        )
    )


def _alert(m: RowMapping) -> AlertRecord:
    return AlertRecord(
        id=int(m["id"]),
        dedup_key=m["dedup_key"],
        group_key=m["group_key"],
        fingerprint=m["fingerprint"],
        status=m["status"],
        alertname=m["alertname"],
        labels=dict(m["labels"]),
        annotations=dict(m["annotations"]),
        starts_at=m["starts_at"],
        ends_at=m["ends_at"],
        received_at=m["received_at"],
        deliveries=int(m["deliveries"]),
        source=m["source"],
    )


def _run(m: RowMapping) -> RunRecord:
    return RunRecord(
        id=m["id"],
        idempotency_key=m["idempotency_key"],
        runbook_namespace=m["runbook_namespace"],
        runbook_name=m["runbook_name"],
        runbook_version=int(m["runbook_version"]),
        alert_id=int(m["alert_id"]),
        target=m["target"],
        state=m["state"],
        reason=m["reason"],
        step=int(m["step"]),
        attempt=int(m["attempt"]),
        next_at=float(m["next_at"]),
        deadline_at=float(m["deadline_at"]),
        finished_at=None if m["finished_at"] is None else float(m["finished_at"]),
        dry_run=bool(m["dry_run"]),
        plan=list(m["plan"]),
        timeline=list(m["timeline"]),
        approval=m["approval"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )
