"""Release analysis across replicas: every replica publishes its counters, the leader
sums them.

Each replica's ``ReplicaObservations.run`` writes, about once a second, the cumulative
per-(route, backend) counters of its workers for the backends that some Release names
(nothing at all while there is no Release) into its own row of the store's
``replica_observations`` table. The leader's release reconciler reads ``read()``: its
own live counters plus the rows other replicas published in the last ``live_for``
seconds, keyed by (replica, route, backend). The tracker diffs each key separately, so
a replica that stops publishing simply stops contributing, and a restarted one (a new
replica id) counts from zero. The store (SQLite or PostgreSQL) is the only shared
medium, as for revisions: no new dependency, and a row per replica per second is cheap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any, Final

from turnout.config.model.release import ReleaseSpec, version_labels
from turnout.control.store.errors import StoreError
from turnout.control.store.records import StoredObject
from turnout.control.store.repository import Store
from turnout.core.clock import Clock
from turnout.observe.metrics import Aggregate, RouteTotals

log = logging.getLogger("turnout.control.releases")

INTERVAL: Final = 1.0
LIVE_FOR: Final = 5.0

Routes = dict[tuple[str, str, str], RouteTotals]


class ReplicaObservations:
    def __init__(
        self,
        store: Store,
        observe: Callable[[], Aggregate],
        clock: Clock,
        labels: Callable[[], set[str]],
        *,
        interval: float = INTERVAL,
        live_for: float = LIVE_FOR,
    ) -> None:
        self.store = store
        self.observe = observe
        self.clock = clock
        self.labels = labels  # backend labels some Release names
        self.interval = interval
        self.live_for = live_for
        self.replica = secrets.token_hex(8)

    def local(self) -> Routes:
        wanted = self.labels()
        return {
            (self.replica, route, backend): totals
            for (route, backend), totals in self.observe().routes.items()
            if backend in wanted
        }

    async def publish(self) -> None:
        routes = self.local()
        if not routes:
            return
        rows = [[r, b, t.codes, t.buckets] for (_, r, b), t in routes.items()]
        await self.store.publish_observations(self.replica, self.clock.time(), json.dumps(rows))

    async def read(self) -> Routes:
        """This replica's live counters and the other live replicas' latest rows."""
        found = self.local()
        try:
            rows = await self.store.observations(self.clock.time() - self.live_for)
        except StoreError as exc:
            log.debug("release observations of other replicas unavailable: %s", exc)
            return found
        for replica, _, text in rows:
            if replica == self.replica:
                continue
            try:
                data: Any = json.loads(text)
                for route, backend, codes, buckets in data:
                    found[(replica, str(route), str(backend))] = RouteTotals(
                        list(codes), list(buckets), 0.0
                    )
            except (ValueError, TypeError):
                continue  # a row from another version: skip it, never fail the analysis
        return found

    async def run(self) -> None:
        while True:
            try:
                await self.publish()
            except StoreError as exc:
                log.debug("could not publish release observations: %s", exc)
            await asyncio.sleep(self.interval)


def release_labels(objects: Iterable[StoredObject]) -> set[str]:
    """The backend labels (both versions) of every stored Release."""
    labels: set[str] = set()
    for obj in objects:
        if obj.kind != "Release":
            continue
        try:
            spec = ReleaseSpec.model_validate(obj.spec)
        except ValueError:
            continue
        labels.update(version_labels(obj.namespace, obj.name, spec))
    return labels
