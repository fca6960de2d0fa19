"""``RemediationReconciler``: executes the runs of a Runbook on the leader, step by step.

Called for each Runbook (on change, on leadership, when the intake or an approval pokes
it, and at the earliest time one of its runs is due, polling at least every ``poll``
seconds for runs another replica's intake stored). For each active run that is due:

- ``pending``: refuse it when another run holds its target (one run per target), the
  target was remediated within the Runbook's ``cooldown``, or one of the Runbook's
  ``conditions`` over live gateway metrics is not met; else it starts;
- ``running``: execute the step it reached. A step that needs approval parks the run
  (``waiting_approval``, with an expiry); an action error is retried with the step's
  back-off, persisted as ``next_at`` (restart-safe), until its retries are spent;
- ``waiting_approval``: expires at its deadline unless approved (the API sets it back to
  ``running``);
- every run fails at its ``deadline``: nothing stays "running" forever.

The run is saved after every transition, naming the state it was read in: an approval
or a cancel that wins the race makes the engine drop its stale copy and look again. A
restart or a new leader resumes each run at the step it reached; actions are idempotent
on the step key (``<run>-<step>``), so a step interrupted after acting is not applied twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from pydantic import ValidationError

from turnout.config.model.remediation import RunbookSpec
from turnout.control.reconcile.base import Condition, Context, Result
from turnout.control.remediation.actions import ActionContext, ActionError, lookup
from turnout.control.remediation.breaker import Breakers
from turnout.control.remediation.conditions import MetricHistory, unmet
from turnout.control.remediation.plan import plan_run
from turnout.control.remediation.signals import SignalWatch
from turnout.control.store import Store
from turnout.control.store.errors import Conflict
from turnout.control.store.records import StoredObject
from turnout.control.store.remediation_records import (
    EXPIRED,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    WAITING,
    RunRecord,
)
from turnout.control.store.remediation_tables import RemediationTables
from turnout.core.durations import parse_duration

log = logging.getLogger("turnout.control.remediation")
POLL: Final = 1.0
ACTED: Final = (SUCCEEDED, FAILED)  # final states that count for the cooldown
MAX_BACKOFF: Final = 300.0


class Stale(Exception):
    """The run changed in the store meanwhile (approved, denied, cancelled)."""


class RemediationReconciler:
    name = "remediation"
    kinds = frozenset({"Runbook"})
    condition = "Runs"

    def __init__(self, breakers: Breakers | None = None, poll: float = POLL) -> None:
        self.breakers = breakers or Breakers()
        self.poll = poll
        self.signals = SignalWatch()
        self.history = MetricHistory()  # for the Runbooks' conditions
        self._signalled: set[str] = set()  # internal alerts already stored

    async def reconcile(self, obj: StoredObject, ctx: Context) -> Result:
        store = ctx.runs
        if store is None:
            return Result()
        spec = RunbookSpec.model_validate(obj.spec)
        if spec.conditions:  # a reading a second, so the conditions have a window
            self.history.observe(ctx.observe(), ctx.now)
        if spec.signal is not None:
            await self._signal(obj, spec, ctx, store)
        runs = await store.runs(active=True, runbook=(obj.namespace, obj.name))
        due: list[float] = [ctx.now + self.poll]
        for run in reversed(runs):  # oldest first
            if run.next_at <= ctx.now:
                try:
                    await self.advance(run, spec, ctx, store)
                except Stale:
                    due.append(ctx.now)
                    continue
            if run.active:
                due.append(run.next_at)
        ok = Condition("Runs", True, "Ready", "runs execute on the leader")
        return Result(conditions=[ok], requeue_at=min(due))

    async def _signal(
        self, obj: StoredObject, spec: RunbookSpec, ctx: Context, store: RemediationTables
    ) -> None:
        assert spec.signal is not None
        alert = self.signals.evaluate(obj.namespace, obj.name, spec.signal, ctx.observe(), ctx.now)
        if alert is None or alert.dedup_key in self._signalled:
            return
        run = plan_run(obj.namespace, obj.name, obj.resource_version, spec, alert, ctx.now)
        if await store.record_alert(alert, [run]):
            log.info("internal signal %s fired on %s/%s", alert.alertname, obj.namespace, obj.name)
        if len(self._signalled) > 10_000:  # bounded: the store dedups anyway
            self._signalled.clear()
        self._signalled.add(alert.dedup_key)

    async def advance(
        self, run: RunRecord, spec: RunbookSpec, ctx: Context, store: RemediationTables
    ) -> None:
        saver = _Saver(store, run)
        now = ctx.now
        if run.state == WAITING and run.approval is not None:
            if now >= float(run.approval["expiresAt"]):
                step = run.plan[run.step]["name"]
                return await saver.finish(
                    now, EXPIRED, f"approval for step {step} expired unanswered"
                )
            if not run.approval.get("approved"):
                run.next_at = min(float(run.approval["expiresAt"]), run.deadline_at)
                return await saver.save()
            run.state = RUNNING
        if now >= run.deadline_at:
            return await saver.finish(now, FAILED, f"deadline passed at step {run.step + 1}")
        if run.state == PENDING:
            refusal = await self._refusal(run, spec, store, now)
            if refusal is None and spec.conditions:
                labels = (await store.alert(run.alert_id)).labels
                refusal = unmet(spec.conditions, labels, run.runbook_namespace, self.history, now)
            if refusal is not None:
                return await saver.finish(now, SKIPPED, refusal)
            run.state = RUNNING
            saver.event(now, "started", f"target {run.target}")
            await saver.save()
        while run.state == RUNNING and run.step < len(run.plan):
            step = run.plan[run.step]
            if step.get("skip"):
                saver.event(now, "step_skipped", f"{step['name']}: its when did not match")
                run.step += 1
                await saver.save()
                continue
            wanted = step.get("approval")
            approved = run.approval is not None and run.approval.get("step") == run.step
            if wanted and not (approved and run.approval and run.approval.get("approved")):
                expiry = parse_duration(str(wanted.get("expiry", "15m")))
                run.state = WAITING
                run.approval = {
                    "step": run.step,
                    "roles": wanted.get("roles", ["admin"]),
                    "requestedAt": now,
                    "expiresAt": now + expiry,
                }
                env = wanted.get("environment")
                if env is not None:
                    run.approval["environment"] = env
                run.next_at = min(now + expiry, run.deadline_at)
                where = f" ({env})" if env is not None else ""
                saver.event(now, "approval_requested", f"step {step['name']}{where}")
                return await saver.save()
            if not await self._step(run, step, spec, ctx, saver):
                return
            now = ctx.now
        if run.state == RUNNING:
            await saver.finish(now, SUCCEEDED, "every step done")

    async def _refusal(
        self, run: RunRecord, spec: RunbookSpec, store: RemediationTables, now: float
    ) -> str | None:
        others = [o for o in await store.runs(target=run.target, limit=100) if o.id != run.id]
        busy = [o for o in others if o.state in (RUNNING, WAITING)]
        if busy:
            return f"target {run.target} is busy: run {busy[0].id} ({busy[0].runbook}) holds it"
        cooldown = parse_duration(spec.cooldown)
        recent = [o for o in others if o.state in ACTED and (o.finished_at or 0.0) > now - cooldown]
        if recent:
            until = (recent[0].finished_at or now) + cooldown
            return (
                f"cooldown: target {run.target} was remediated by run {recent[0].id}; "
                f"next run allowed in {until - now:.1f}s"
            )
        return None

    async def _step(
        self,
        run: RunRecord,
        step: dict[str, Any],
        spec: RunbookSpec,
        ctx: Context,
        saver: _Saver,
    ) -> bool:
        """Run the current step once; True when the run moves on to the next."""
        now = ctx.now
        timeout = float(step.get("timeout", 30.0))
        saver.event(now, "step_started", f"{step['name']} attempt {run.attempt + 1}")
        await saver.save()  # the heartbeat: a crash from here on resumes this step
        actx = ActionContext(
            key=f"{run.id}-{run.step}",
            run_id=run.id,
            namespace=run.runbook_namespace,
            clock=ctx.clock,
            commit=ctx.commit,
            objects=ctx.objects,
            limits=spec.limits,
            breakers=self.breakers,
            timeout=timeout,
            observe=ctx.observe,
            revision=_manifests_of(ctx),
            resolved=_resolution_of(ctx, run),
            kubernetes=spec.kubernetes,
        )
        try:
            entry = lookup(str(step["action"]))
            params = entry.parse(step.get("params") or {})
            async with asyncio.timeout(timeout):
                summary = await entry.fn(params, actx)
        except ActionError as exc:
            return await self._failed(run, step, str(exc), exc.retry, ctx, saver)
        except TimeoutError:
            return await self._failed(run, step, f"timed out after {timeout:g}s", True, ctx, saver)
        except (Conflict, ValidationError) as exc:
            return await self._failed(run, step, str(exc).splitlines()[0], True, ctx, saver)
        saver.event(ctx.now, "step_done", f"{step['name']}: {summary}")
        run.step += 1
        run.attempt = 0
        run.approval = None
        await saver.save()
        return True

    async def _failed(
        self,
        run: RunRecord,
        step: dict[str, Any],
        error: str,
        retry: bool,
        ctx: Context,
        saver: _Saver,
    ) -> bool:
        now = ctx.now
        retries = int(step.get("retries", 0))
        if retry and run.attempt < retries:
            delay = min(float(step.get("backoff", 1.0)) * 2**run.attempt, MAX_BACKOFF)
            run.attempt += 1
            run.next_at = now + delay
            saver.event(now, "step_retry", f"{step['name']}: {error}; again in {delay:g}s")
            await saver.save()
            return False
        log.warning("remediation run %s failed at step %s: %s", run.id, step["name"], error)
        await saver.finish(now, FAILED, f"step {step['name']}: {error}")
        return False


class _Saver:
    """Saves a run naming the state it was read in; ``Stale`` when someone else won."""

    def __init__(self, store: RemediationTables, run: RunRecord) -> None:
        self.store = store
        self.run = run
        self.stored_state = run.state

    def event(self, at: float, event: str, detail: str) -> None:
        self.run.timeline.append({"at": at, "event": event, "detail": detail})

    async def save(self) -> None:
        try:
            await self.store.save_run(self.run, expect_state=self.stored_state)
        except Conflict:
            raise Stale(self.run.id) from None
        self.stored_state = self.run.state

    async def finish(self, at: float, state: str, reason: str) -> None:
        self.run.state = state
        self.run.reason = reason
        self.run.finished_at = at
        self.run.next_at = at
        self.event(at, state, reason)
        await self.save()


def _manifests_of(ctx: Context) -> Callable[[int], Awaitable[list[dict[str, Any]]]] | None:
    """The store's revisions, for ``rollback_config`` (the runs' store is the Store)."""
    store = ctx.runs
    if not isinstance(store, Store):
        return None

    async def manifests(number: int) -> list[dict[str, Any]]:
        return (await store.revision(number))[1]

    return manifests


def _resolution_of(ctx: Context, run: RunRecord) -> Callable[[], Awaitable[float | None]] | None:
    """When the run's alert resolved, for the verify steps (None for internal signals,
    which have no resolution)."""
    store = ctx.runs
    if store is None or not run.alert_id:
        return None

    async def resolved() -> float | None:
        at = await store.resolution(run.alert_id)
        return at.timestamp() if at is not None else None

    return resolved


def remediation_breakers(control: Any) -> Breakers | None:
    """The breakers of a control plane's remediation reconciler (None without one)."""
    engine = control.reconcile.reconcilers.get(RemediationReconciler.name)
    return engine.breakers if isinstance(engine, RemediationReconciler) else None
