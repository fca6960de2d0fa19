"""``LeaseElector``: one leader among the replicas, through a ``coordination.k8s.io/v1`` Lease.

The same interface as ``store.leader.LeaderLock`` (``run(on_change)``, ``is_leader``), so
in controller mode the control plane's reconcilers and the status writer follow it.
The algorithm is client-go's leaderelection:

- every ``retry`` seconds read the Lease; create it when absent (holder = us);
- the holder renews ``renewTime`` with an update that carries the ``resourceVersion`` it
  read, so two writers cannot both win (409 Conflict for the loser);
- a candidate takes over only when the record (holder + renewTime) has not changed for
  ``duration`` seconds *by its own monotonic clock*, never by comparing timestamps
  between machines, and bumps ``leaseTransitions``;
- a leader that cannot renew for ``duration - retry`` seconds steps down before anyone
  may take over; on shutdown it releases the Lease (empty holder) so a standby takes
  over at once.

Leases go as raw JSON: the official client re-sends ``renewTime`` in a format the API
server refuses. Times are written as MicroTime (``2006-01-02T15:04:05.000000Z``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from turnout.control.kube.client import KubeAPIError, KubeClient, ResourceType

log = logging.getLogger("turnout.kube")

LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")


def micro_time(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        identity: str,
        name: str = "turnout-controller",
        duration: float = 15.0,
        retry: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.identity = identity
        self.name = name
        self.duration = duration
        self.retry = retry
        self.clock = clock
        self.is_leader = False
        self.holder = ""
        self._observed: tuple[str, str] = ("", "")  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._on_change: Callable[[bool], None] | None = None
        self.listeners: list[Callable[[bool], None]] = []  # told too (the status writer)

    def _set(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        log.info(
            "Lease %s/%s: %s",
            self.namespace,
            self.name,
            "became leader" if leader else "stepped down",
        )
        for callback in [self._on_change, *self.listeners]:
            if callback is None:
                continue
            try:
                callback(leader)
            except Exception:
                log.exception("Lease %s: on_change(%s) failed", self.name, leader)

    def _spec(self, transitions: int, acquired: str) -> dict[str, Any]:
        now = micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_once(self) -> bool:
        """One round: acquire or renew when allowed. True when we lead afterwards."""
        path = LEASES.path(self.namespace, self.name)
        try:
            lease = await self.client.request("GET", path)
        except KubeAPIError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0, ""),
            }
            await self.client.request("POST", LEASES.path(self.namespace), body)
            self._renewed_at = self.clock()
            self.holder = self.identity
            return True
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        now = self.clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        self.holder = holder
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        expired = now - self._observed_at >= duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        acquired = str(spec.get("acquireTime") or "")
        if holder != self.identity:
            transitions, acquired = transitions + 1, ""
        lease["spec"] = {**spec, **self._spec(transitions, acquired)}
        await self.client.request("PUT", path, lease)  # carries the resourceVersion read
        self._renewed_at = self.clock()
        self.holder = self.identity
        return True

    async def run(self, on_change: Callable[[bool], None] | None = None) -> None:
        """Until cancelled; never raises anything else. Releases the Lease when cancelled."""
        self._on_change = on_change
        try:
            while True:
                try:
                    self._set(await self.try_once())
                except (KubeAPIError, httpx.HTTPError) as exc:
                    if isinstance(exc, KubeAPIError) and exc.status == 409:
                        log.debug("Lease %s: lost a race (%s)", self.name, exc)
                    else:
                        log.warning("Lease %s: cannot read or renew (%s)", self.name, exc)
                    # step down before a standby may take over: it waits `duration`
                    if (
                        self.is_leader
                        and self.clock() - self._renewed_at > self.duration - self.retry
                    ):
                        self._set(False)
                await asyncio.sleep(self.retry)
        finally:
            if self.is_leader:
                await self._release()
            self._set(False)

    async def _release(self) -> None:
        path = LEASES.path(self.namespace, self.name)
        try:
            lease = await self.client.request("GET", path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            # a past renewTime and a 1 s duration: standbys take over on their next round
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1}
            await self.client.request("PUT", path, lease)
        except (KubeAPIError, httpx.HTTPError) as exc:
            log.debug("Lease %s: not released (%s)", self.name, exc)
