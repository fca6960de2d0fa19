"""The store's ``replica_observations`` table (``Store`` mixes these queries in): each
replica replaces its own row; readers take the rows published since a time."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from turnout.control.store import tables as t
from turnout.control.store.connection import StoreBase


class ObservationsTable(StoreBase):
    async def publish_observations(self, replica: str, published_at: float, routes: str) -> None:
        """Replace ``replica``'s row (``routes``: JSON text)."""
        o = t.replica_observations
        with self._guard():
            async with self._transaction() as conn:
                await conn.execute(delete(o).where(o.c.replica == replica))
                await conn.execute(
                    insert(o).values(replica=replica, published_at=published_at, routes=routes)
                )

    async def observations(self, since: float) -> list[tuple[str, float, str]]:
        """(replica, published_at, routes JSON) of every row published at or after ``since``."""
        o = t.replica_observations
        query = select(o.c.replica, o.c.published_at, o.c.routes).where(o.c.published_at >= since)
        with self._guard():
            async with self._connection(self._engine) as conn:
                rows = (await conn.execute(query)).all()
        return [(str(r[0]), float(r[1]), str(r[2])) for r in rows]

    async def drop_observations(self, before: float) -> None:
        """Forget replicas silent since ``before``."""
        o = t.replica_observations
        with self._guard():
            async with self._transaction() as conn:
                await conn.execute(delete(o).where(o.c.published_at < before))
