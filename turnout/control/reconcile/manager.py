"""``ReconcileManager``: runs the registered reconcilers on the leader, on a clock.

What it guarantees a reconciler:

- **Level-triggered calls.** For every object of a watched kind, ``reconcile`` runs when
  the object is created or changed (a new ``resource_version``: status writes do not
  count), when this process becomes the leader (see resuming below), and when the time
  the reconciler asked for (``Result.requeue_at``) comes. Calls for one reconciler run one
  at a time, in due order; an object deleted before its turn is simply forgotten.
- **Leader only.** Nothing runs unless ``set_leader(True)`` was called (the PostgreSQL
  advisory lock of ``store.leader``; SQLite leads at once). Losing the lead drops the
  schedule; the new leader resumes from the store.
- **Persisted progress.** After each call the manager saves a ``Progress`` row (the
  ``resource_version`` it reconciled, the requested requeue time, the error streak). On
  becoming leader it reads them back: an object whose row is current resumes at its
  saved requeue time (or waits for a change), any other object runs at once. So a
  restart or a leader change neither forgets a deadline nor repeats work already done.
- **Errors back off.** An exception is retried after ``backoff_first`` doubling up to
  ``backoff_max`` seconds; it is logged once per streak (not per retry) and reported in
  the object's status as the reconciler's ``condition`` = False, reason
  ``ReconcileError``; the first success after a streak sets it back to True.
- **Status.** The conditions a reconciler returns are merged into the object's stored
  status by type (``Store.merge_conditions``, serialised with commits) with the
  object's ``observedGeneration``, and written only when they changed; the control
  plane publishes the change to watch streams.

Time comes from the injected ``Clock`` only. ``run_due()`` does one pass (everything due
now) and returns the next due wall time; ``run()`` is the production loop around it,
which arms a ``loop.call_later`` timer for that time and wakes early on ``observe`` or a
leader change. Unit tests call ``run_due()`` after advancing a fake clock: no sleeping.
The schedule is a dict scanned per pass: the control plane holds hundreds of objects,
not millions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from turnout.control.reconcile.base import Condition, Context, Reconciler, no_observations
from turnout.control.reconcile.conditions import condition_dict, merge_conditions
from turnout.control.store.records import Change, ObjectKey, Progress, StoredObject, describe
from turnout.control.store.remediation_tables import RemediationTables
from turnout.core.clock import Clock, utcnow
from turnout.observe.metrics import Aggregate

log = logging.getLogger("turnout.control.reconcile")

BACKOFF_FIRST: Final = 1.0
BACKOFF_MAX: Final = 300.0
MIN_REQUEUE: Final = 0.1  # a requeue "now" waits this long: no busy loop
ERROR_REASON: Final = "ReconcileError"

Slot = tuple[str, ObjectKey]  # (reconciler name, object key)


class ProgressStore(Protocol):
    """The part of ``Store`` the manager persists progress in."""

    async def progress(self, reconciler: str) -> list[Progress]: ...
    async def save_progress(self, rec: Progress) -> None: ...
    async def drop_progress(self, reconciler: str, key: ObjectKey) -> None: ...


class Host(Protocol):
    """What the control plane gives the manager: its objects and its writes."""

    def objects(self) -> Mapping[ObjectKey, StoredObject]: ...

    async def commit_as(
        self, actor: str, changes: list[Change], *, message: str, action: str
    ) -> None: ...

    async def write_conditions(
        self, key: ObjectKey, conditions: Sequence[dict[str, Any]]
    ) -> None: ...


class ReconcileManager:
    def __init__(
        self,
        reconcilers: Sequence[Reconciler],
        store: ProgressStore,
        host: Host,
        clock: Clock,
        *,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        observe: Callable[[], Aggregate] = no_observations,
    ) -> None:
        names = [r.name for r in reconcilers]
        if len(set(names)) != len(names):
            raise ValueError(f"reconciler names must be unique: {names}")
        self.reconcilers = {r.name: r for r in reconcilers}
        self.store = store
        self.host = host
        self.clock = clock
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.leading = False
        self._resume_pending = False
        self._due: dict[Slot, float] = {}
        self._seen: dict[Slot, int] = {}  # resource_version last scheduled for
        self._progress: dict[Slot, Progress] = {}
        self._forget: set[Slot] = set()  # deleted objects whose progress goes next
        self._wake = asyncio.Event()
        runs = store if isinstance(store, RemediationTables) else None
        self._contexts = {
            r.name: Context(clock, _ActorCommit(host, r.name), observe, host.objects, runs)
            for r in reconcilers
        }

    # -- inputs ---------------------------------------------------------------------------

    def set_leader(self, leader: bool) -> None:
        if leader == self.leading:
            return
        self.leading = leader
        self._due.clear()
        self._seen.clear()
        self._progress.clear()
        self._forget.clear()
        self._resume_pending = leader
        self._wake.set()

    def observe(self) -> None:
        """The host's objects changed: schedule every created, changed or deleted one."""
        if not self.leading or self._resume_pending:
            return
        objects = self.host.objects()
        now = self.clock.time()
        for rec in self.reconcilers.values():
            for key, obj in objects.items():
                slot = (rec.name, key)
                if key[0] in rec.kinds and self._seen.get(slot) != obj.resource_version:
                    self._seen[slot] = obj.resource_version
                    self._due[slot] = now
        for slot in [s for s in self._seen if s[1] not in objects]:
            del self._seen[slot]
            self._due.pop(slot, None)
            self._forget.add(slot)
        self._wake.set()

    def poke(self, name: str, key: ObjectKey) -> None:
        """Run reconciler ``name`` on ``key`` now (news that is not an object change:
        a stored alert, an approval)."""
        if self.leading and (name, key) in self._seen:
            self._due[(name, key)] = self.clock.time()
            self._wake.set()

    # -- running --------------------------------------------------------------------------

    def next_due(self) -> float | None:
        return min(self._due.values(), default=None) if self.leading else None

    async def run_due(self) -> float | None:
        """Run every reconciliation due now (each slot at most once); return the next
        due wall time, or None when nothing is scheduled."""
        if not self.leading:
            return None
        if self._resume_pending:
            self._resume_pending = False
            try:
                await self._resume()
            except Exception as exc:
                self._resume_pending = True
                log.warning("reconcilers: cannot read their progress (%s); retrying", exc)
                return self.clock.time() + self.backoff_first
        done: set[Slot] = set()
        while True:
            now = self.clock.time()
            ready = sorted(
                (when, slot) for slot, when in self._due.items() if when <= now and slot not in done
            )
            if not ready:
                break
            for _, slot in ready:
                if self._due.get(slot, now + 1) > now:
                    continue  # rescheduled or dropped by an earlier call in this pass
                del self._due[slot]
                done.add(slot)
                try:
                    await self._run_one(slot)
                except Exception:  # a bug outside the reconciler: keep the slot scheduled
                    log.exception("reconciler %s: %s failed unexpectedly", slot[0], slot[1])
                    self._due.setdefault(slot, self.clock.time() + self.backoff_first)
                if not self._still_leading():
                    return None
        while self._forget:
            name, key = slot = self._forget.pop()
            self._progress.pop(slot, None)
            try:
                await self.store.drop_progress(name, key)
            except Exception as exc:
                log.debug("reconciler %s: cannot drop progress of %s: %s", name, key, exc)
        return self.next_due()

    def _still_leading(self) -> bool:
        # a method, so that the type checker does not assume the flag cannot change
        return self.leading

    async def run(self) -> None:
        """Until cancelled: run what is due, then wait for the next due time or a change."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            try:
                due = await self.run_due()
            except Exception:  # a bug here must not stop every reconciler for good
                log.exception("reconcile manager: a pass failed; retrying")
                due = self.clock.time() + self.backoff_first
            if due is None:
                await self._wake.wait()
                continue
            handle = loop.call_later(max(0.0, due - self.clock.time()), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                handle.cancel()

    async def _resume(self) -> None:
        objects = self.host.objects()
        now = self.clock.time()
        for rec in self.reconcilers.values():
            saved = {p.key: p for p in await self.store.progress(rec.name)}
            for key in saved.keys() - objects.keys():
                await self.store.drop_progress(rec.name, key)
            for key, obj in objects.items():
                if key[0] not in rec.kinds:
                    continue
                slot = (rec.name, key)
                self._seen[slot] = obj.resource_version
                p = saved.get(key)
                if p is None or p.observed_version != obj.resource_version:
                    self._due[slot] = now
                    continue
                self._progress[slot] = p
                if p.requeue_at is not None:
                    self._due[slot] = p.requeue_at

    async def _run_one(self, slot: Slot) -> None:
        name, key = slot
        rec = self.reconcilers[name]
        obj = self.host.objects().get(key)
        before = self._progress.get(slot)
        if obj is None:
            self._progress.pop(slot, None)
            try:
                await self.store.drop_progress(name, key)
            except Exception as exc:
                log.debug("reconciler %s: cannot drop progress of %s: %s", name, key, exc)
            return
        try:
            result = await rec.reconcile(obj, self._contexts[name])
        except Exception as exc:
            await self._failed(rec, obj, before, exc)
            return
        conditions = list(result.conditions)
        if before is not None and before.failures:
            log.info(
                "reconciler %s: %s reconciled again after %d failure(s)",
                name,
                describe(*key),
                before.failures,
            )
            if all(c.type != rec.condition for c in conditions):
                conditions.append(Condition(rec.condition, True, "Reconciled"))
        requeue = result.requeue_at
        if requeue is not None:
            requeue = max(requeue, self.clock.time() + MIN_REQUEUE)
        await self._settle(rec, obj, Progress(name, key, obj.resource_version, requeue), conditions)

    async def _failed(
        self, rec: Reconciler, obj: StoredObject, before: Progress | None, exc: Exception
    ) -> None:
        failures = (before.failures if before is not None else 0) + 1
        delay = min(self.backoff_first * 2 ** (failures - 1), self.backoff_max)
        if failures == 1:  # once per streak; the retries only at debug level
            log.warning(
                "reconciler %s: %s failed: %s (retrying with back-off up to %gs)",
                rec.name,
                describe(*obj.key),
                exc,
                self.backoff_max,
                exc_info=exc,
            )
        else:
            log.debug("reconciler %s: %s failed again: %s", rec.name, describe(*obj.key), exc)
        message = f"{type(exc).__name__}: {exc}"
        progress = Progress(
            rec.name, obj.key, obj.resource_version, self.clock.time() + delay, failures, message
        )
        await self._settle(
            rec, obj, progress, [Condition(rec.condition, False, ERROR_REASON, message)]
        )

    async def _settle(
        self, rec: Reconciler, obj: StoredObject, progress: Progress, conditions: list[Condition]
    ) -> None:
        """Schedule the next call, then persist status and progress (a store error is
        logged; the progress kept in memory still drives this leader)."""
        slot = (rec.name, obj.key)
        if progress.requeue_at is not None and slot not in self._due:
            self._due[slot] = progress.requeue_at
        try:
            if conditions:
                status = merge_conditions(
                    obj.status, conditions, obj.generation, utcnow(self.clock)
                )
                if status != (obj.status or {}):
                    items = [condition_dict(c, obj.generation) for c in conditions]
                    await self.host.write_conditions(obj.key, items)
            if self._progress.get(slot) != progress:
                await self.store.save_progress(progress)
        except Exception as exc:  # the store is away: said once per streak, like errors
            level = logging.WARNING if progress.failures <= 1 else logging.DEBUG
            log.log(level, "reconciler %s: cannot save %s: %s", rec.name, describe(*obj.key), exc)
        self._progress[slot] = progress


class _ActorCommit:
    """``Context.commit`` of one reconciler: commits as ``system:<name>``."""

    __slots__ = ("host", "name")

    def __init__(self, host: Host, name: str) -> None:
        self.host = host
        self.name = name

    async def __call__(self, changes: list[Change], *, message: str, action: str) -> None:
        await self.host.commit_as(self.name, changes, message=message, action=action)
