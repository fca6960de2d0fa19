"""Keeping the store's Secrets sealed with the current key (``Store`` mixes this in).

``reseal`` runs once at start, after the migrations (``engine.open_store``), in one write
transaction serialised with commits. The ``store_meta`` row ``secrets_kid`` names the key
that sealed every Secret in the store:

- no keyring: a store with that row (or any sealed Secret) fails with ``SecretsKeyError``;
  a store that never had a key stays plaintext (stores opened by tests and tools);
- the row names the keyring's primary key: only the current Secret objects are opened,
  so a wrong keyring fails here, at start, not on the first read;
- otherwise (first start with a key, or a new primary key: rotation) every Secret in
  ``objects`` and in every revision snapshot that is plaintext or sealed with another
  key is (re-)sealed with the primary key, then the row is updated. Opening an old
  value needs its key in the keyring, so a rotation keeps the old key listed until this
  has run.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.control.store import tables as t
from turnout.control.store.connection import COMMIT_LOCK, StoreBase
from turnout.control.store.sealing import HOW_TO_SET, SEALED_KINDS, SecretsKeyError

KID_KEY: Final = "secrets_kid"
log = logging.getLogger("turnout.control.store")


class SealedRows(StoreBase):
    async def sealed_with(self) -> str | None:
        """The id of the key that sealed the store's Secrets (``None``: never sealed)."""
        query = select(t.store_meta.c.value).where(t.store_meta.c.key == KID_KEY)
        with self._guard():
            async with self._connection(self._engine) as conn:
                return (await conn.execute(query)).scalar()

    async def reseal(self) -> int:
        """Check the keyring against the store and (re-)seal what needs it (module doc);
        returns how many values were written. ``SecretsKeyError`` names the fix."""
        ring = self.sealer.keyring
        with self._guard():
            async with self._transaction() as conn:
                if self._pg:
                    await conn.execute(select(func.pg_advisory_xact_lock(COMMIT_LOCK)))
                kid = (
                    await conn.execute(
                        select(t.store_meta.c.value).where(t.store_meta.c.key == KID_KEY)
                    )
                ).scalar()
                if ring is None and kid is not None:
                    raise SecretsKeyError(
                        f"the store's Secrets are encrypted (key id {kid}) and no secrets "
                        f"key was given: {HOW_TO_SET}"
                    )
                if ring is not None and kid is not None and kid not in ring.keys:
                    raise SecretsKeyError(
                        f"the store's Secrets are encrypted with key id {kid}, which is not "
                        f"among the keys from {ring.source} ({', '.join(ring.keys)}): "
                        f"{HOW_TO_SET}"
                    )
                count = await self._reseal_objects(conn)
                if ring is None or kid == ring.primary:
                    return count
                count += await self._reseal_revisions(conn)
                if count:  # a new store has nothing to (re-)encrypt: say nothing
                    log.info(
                        "store: %d Secret values (objects and revisions) encrypted with key id %s",
                        count,
                        ring.primary,
                    )
                if kid is None:
                    await conn.execute(insert(t.store_meta).values(key=KID_KEY, value=ring.primary))
                else:
                    await conn.execute(
                        update(t.store_meta)
                        .where(t.store_meta.c.key == KID_KEY)
                        .values(value=ring.primary)
                    )
                return count

    async def _reseal_objects(self, conn: AsyncConnection) -> int:
        o = t.objects
        rows = (
            await conn.execute(
                select(o.c.kind, o.c.namespace, o.c.name, o.c.spec).where(
                    o.c.kind.in_(sorted(SEALED_KINDS))
                )
            )
        ).all()
        count = 0
        for kind, namespace, name, stored in rows:
            spec = self.sealer.open_spec(kind, namespace, name, stored)  # fails on a wrong key
            if not self.sealer.needs_reseal(stored) or spec is None:
                continue
            await conn.execute(
                update(o)
                .where(o.c.kind == kind, o.c.namespace == namespace, o.c.name == name)
                .values(spec=self.sealer.seal_spec(kind, namespace, name, spec))
            )
            count += 1
        return count

    async def _reseal_revisions(self, conn: AsyncConnection) -> int:
        r = t.revisions
        numbers = (await conn.execute(select(r.c.number).order_by(r.c.number))).scalars().all()
        count = 0
        for number in numbers:  # one snapshot in memory at a time
            snapshot = (
                await conn.execute(select(r.c.snapshot).where(r.c.number == number))
            ).scalar_one()
            manifests: list[dict[str, Any]] = [dict(m) for m in snapshot or []]
            stale = [i for i, m in enumerate(manifests) if self.sealer.manifest_needs_reseal(m)]
            if not stale:
                continue
            for i in stale:
                manifests[i] = self.sealer.seal_manifest(self.sealer.open_manifest(manifests[i]))
            await conn.execute(update(r).where(r.c.number == number).values(snapshot=manifests))
            count += len(stale)
        return count
