"""The store's ``reconciler_progress`` table (``Store`` mixes these queries in)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, and_, delete, insert, select

from turnout.control.store import tables as t
from turnout.control.store.connection import StoreBase
from turnout.control.store.records import (
    ObjectKey,
    Progress,
)


class ProgressTable(StoreBase):
    # -- reconciler progress -------------------------------------------------------------

    async def progress(self, reconciler: str) -> list[Progress]:
        """Everything ``reconciler`` recorded, sorted by object key."""
        p = t.reconciler_progress
        query = (
            select(p)
            .where(p.c.reconciler == reconciler)
            .order_by(p.c.kind, p.c.namespace, p.c.name)
        )
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [_progress(r._mapping) for r in rows]

    async def save_progress(self, rec: Progress) -> None:
        """Insert or replace one reconciler's progress on one object."""
        kind, namespace, name = rec.key
        values = {
            "reconciler": rec.reconciler,
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "observed_version": rec.observed_version,
            "requeue_at": rec.requeue_at,
            "failures": rec.failures,
            "last_error": rec.last_error,
            "updated_at": self._now(),
        }
        with self._guard():
            async with self._transaction() as conn:
                await conn.execute(delete(t.reconciler_progress).where(_progress_clause(rec)))
                await conn.execute(insert(t.reconciler_progress).values(values))

    async def drop_progress(self, reconciler: str, key: ObjectKey) -> None:
        query = delete(t.reconciler_progress).where(
            _progress_clause(Progress(reconciler, key, 0, None))
        )
        with self._guard():
            async with self._transaction() as conn:
                await conn.execute(query)


def _progress(m: RowMapping) -> Progress:
    return Progress(
        reconciler=m["reconciler"],
        key=(m["kind"], m["namespace"], m["name"]),
        observed_version=int(m["observed_version"]),
        requeue_at=None if m["requeue_at"] is None else float(m["requeue_at"]),
        failures=int(m["failures"]),
        last_error=m["last_error"],
    )


def _progress_clause(rec: Progress) -> Any:
    p = t.reconciler_progress
    kind, namespace, name = rec.key
    return and_(
        p.c.reconciler == rec.reconciler,
        p.c.kind == kind,
        p.c.namespace == namespace,
        p.c.name == name,
    )
