"""``ReleaseReconciler``: runs each Release's state machine on the leader.

Each call reads the persisted state (``state.STATE_ANNOTATION``; none, or one of an
older spec generation, queues a new run: ``queue.decide`` starts it at once unless its
Environment's queue, a blackout or its schedule holds it, and the reason it waits is
persisted), feeds this tick's counters into the release's
``Tracker``, lets ``machine.tick`` decide, and, when the state changed, commits it as a
new revision of the Release (``expect_version``: a concurrent command or a second
leader loses with a conflict and is called again with the new state). The weights thus
travel to the data plane as a revision: see ``state.py`` for why not as status. The
numbers behind the verdict (with the readings of ``analysis.metrics`` from Prometheus or
a JSON URL, ``providers.py``) are reported in the ``Analysis`` condition at every tick,
the queue position in the ``Queued`` condition. A live release in a blackout holds at
its step (``queue.hold``); a promoted one is copied to its environment's ``next``
(``promotion.follow_next``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from turnout.config.model.release import ReleaseSpec, version_labels
from turnout.control.reconcile.base import Condition, Context, Result
from turnout.control.releases import approvals, machine, promotion, queue, webhooks
from turnout.control.releases.providers import ExternalMetrics
from turnout.control.releases.state import (
    ABORTED,
    DEGRADED,
    LIVE,
    PENDING,
    PROMOTED,
    STATE_ANNOTATION,
    ReleaseState,
    plan,
)
from turnout.control.releases.stats import (
    Judgement,
    Outcome,
    combine,
    judge_latency,
    judge_success,
)
from turnout.control.releases.tracker import Tracker, Versions
from turnout.control.store.errors import Conflict
from turnout.control.store.records import Change, ObjectKey, StoredObject
from turnout.core.durations import parse_duration
from turnout.observe.metrics import RouteTotals

log = logging.getLogger("turnout.control.releases")


def judgements(spec: ReleaseSpec, versions: Versions) -> list[Judgement]:
    a = spec.analysis
    sr = a.success_rate
    out = [
        judge_success(
            versions.candidate,
            versions.stable,
            min_samples=a.min_samples,
            tolerance=sr.tolerance,
            alpha=sr.alpha,
            dry_run=sr.dry_run,
        )
    ]
    if a.latency is not None:
        lat = a.latency
        out.append(
            judge_latency(
                versions.candidate,
                versions.stable,
                min_samples=a.min_samples,
                q=lat.percentile,
                max_seconds=parse_duration(lat.max) if lat.max else None,
                max_ratio=lat.max_ratio,
                dry_run=lat.dry_run,
            )
        )
    return out


def route_failures(spec: ReleaseSpec, routes: Mapping[str, Versions]) -> list[Judgement]:
    """The failing judgements of each route on its own (``analysis.perRoute``), named
    ``metric[route]``; a route that passes or is undecided adds nothing (the sum over
    the routes decides a pass)."""
    out = []
    for route in sorted(routes):
        for j in judgements(spec, routes[route]):
            if j.outcome == "fail":
                out.append(replace(j, metric=f"{j.metric}[{route}]"))
    return out


def explain(found: list[Judgement]) -> str:
    return "; ".join(
        f"{j.metric}{' (dryRun)' if j.dry_run else ''} {j.outcome}: {j.message}" for j in found
    )


def with_state(obj: StoredObject, state: ReleaseState) -> Change:
    manifest = obj.manifest(with_status=False)
    meta = manifest["metadata"]
    meta["annotations"] = {**(meta.get("annotations") or {}), STATE_ANNOTATION: state.to_json()}
    return Change(
        "put", obj.kind, obj.namespace, obj.name, manifest, expect_version=obj.resource_version
    )


class ReleaseReconciler:
    name = "release"
    kinds = frozenset({"Release"})
    condition = "Reconciled"

    def __init__(self) -> None:
        self._trackers: dict[ObjectKey, Tracker] = {}
        self._external: dict[ObjectKey, ExternalMetrics] = {}
        self._http: httpx.AsyncClient | None = None  # for webhooks, made on first use
        # Where counters come from: every replica's (``observations.ReplicaObservations
        # .read``, set by the control plane); None: ``ctx.observe``, this replica's.
        self.source: Callable[[], Awaitable[Mapping[Any, RouteTotals]]] | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    def tracker(self, obj: StoredObject, spec: ReleaseSpec) -> Tracker:
        stable, candidate = version_labels(obj.namespace, obj.name, spec)
        classes = spec.analysis.success_rate.failure_classes
        t = self._trackers.get(obj.key)
        if t is None or (t.stable_label, t.candidate_label, tuple(t.failure_classes)) != (
            stable,
            candidate,
            tuple(classes),
        ):
            t = self._trackers[obj.key] = Tracker(stable, candidate, classes)
        return t

    async def reconcile(self, obj: StoredObject, ctx: Context) -> Result:
        spec = ReleaseSpec.model_validate(obj.spec)
        steps = plan(spec)
        now = ctx.now
        state = ReleaseState.from_annotations(obj.annotations)
        if state is None or state.generation != obj.generation:
            state = ReleaseState(
                phase=PENDING, generation=obj.generation, queued_at=now, reason="queued"
            )
        if spec.depends_on and (state.phase == PENDING or state.phase in LIVE):
            failed = queue.failed_dependency(obj, spec, ctx.objects())
            if failed is not None:
                return await self._abort(obj, spec, state, failed, ctx)
        if state.phase == PENDING:
            decision = queue.decide(obj, spec, state, ctx.objects(), now)
            if not decision.start:
                return await self._wait(obj, state, decision, ctx)
            state = replace(
                machine.start(obj.generation, now),
                queued_at=state.queued_at,
                bypass=state.bypass,
            )
            if decision.environment is not None:
                state = replace(state, reason=f"started from the {decision.environment} queue")
        tracker = self.tracker(obj, spec)
        tracker.follow((state.generation, state.run), state.step)
        metrics = spec.analysis.metrics
        external = None
        if metrics and state.phase in LIVE and not state.skip_analysis:
            external = self._external.get(obj.key)
            if external is None or external.run != (state.generation, state.run):
                external = ExternalMetrics((state.generation, state.run))
                self._external[obj.key] = external
            await external.refresh(self._client(), metrics, now)
        if state.phase in LIVE:
            tracker.read(await self.source() if self.source is not None else ctx.observe().routes)
        found: dict[str, list[Judgement]] = {}

        def judge(scope: str) -> tuple[Outcome, str]:
            window = tracker.run if scope == "run" else tracker.step_window
            found[scope] = js = judgements(spec, window) + (
                external.judgements(metrics) if external is not None else []
            )
            if spec.analysis.per_route:
                js += route_failures(
                    spec, tracker.route_runs if scope == "run" else tracker.route_steps
                )
            return combine(js), explain(js)

        gates = None
        if spec.webhooks and state.phase in LIVE:
            gates = await webhooks.evaluate(
                self._client(), spec, steps, state, obj.namespace, obj.name
            )
        if spec.approvals and state.phase in LIVE:
            gates = approvals.gates(spec, state, gates, obj.name)
        held = queue.hold(obj, state, ctx.objects(), now) if state.phase in LIVE else None
        new, requeue = machine.tick(
            steps, state, now, judge, spec.analysis, gates, held[0] if held else None
        )
        if new != state or obj.annotations.get(STATE_ANNOTATION) != state.to_json():
            try:
                await ctx.commit([with_state(obj, new)], message=new.reason, action="release")
            except Conflict:
                return Result(requeue_at=now)  # someone else moved it: look again
            if new.phase != state.phase:
                log.info("release %s/%s: %s (%s)", obj.namespace, obj.name, new.phase, new.reason)
                if new.phase not in LIVE and spec.webhooks:
                    await webhooks.notify(self._client(), spec, obj.namespace, obj.name, new.phase)
        if new.phase == PROMOTED:
            await promotion.follow_next(obj, ctx)
        return Result(conditions=self._conditions(new, found), requeue_at=requeue)

    async def _abort(
        self, obj: StoredObject, spec: ReleaseSpec, state: ReleaseState, why: str, ctx: Context
    ) -> Result:
        """A train's release whose dependency failed: all traffic to stable."""
        new = state.moved(ctx.now, phase=ABORTED, weight=0, hold="", reason=why, by=machine.SYSTEM)
        try:
            await ctx.commit([with_state(obj, new)], message=why, action="release")
        except Conflict:
            return Result(requeue_at=ctx.now)
        log.info("release %s/%s: %s (%s)", obj.namespace, obj.name, new.phase, why)
        if spec.webhooks:
            await webhooks.notify(self._client(), spec, obj.namespace, obj.name, new.phase)
        return Result(conditions=self._conditions(new, {}))

    async def _wait(
        self, obj: StoredObject, state: ReleaseState, decision: queue.Decision, ctx: Context
    ) -> Result:
        """A queued release: persist why it waits (a revision only when that changes)."""
        new = (
            state
            if state.reason == decision.reason
            else state.moved(ctx.now, reason=decision.reason, by=machine.SYSTEM)
        )
        if obj.annotations.get(STATE_ANNOTATION) != new.to_json():
            try:
                await ctx.commit([with_state(obj, new)], message=new.reason, action="release")
            except Conflict:
                return Result(requeue_at=ctx.now)
        conditions = [
            Condition("Ready", True, PENDING, new.reason),
            Condition("Queued", True, f"Position{decision.position}", decision.reason),
        ]
        return Result(conditions=conditions, requeue_at=decision.recheck)

    def _conditions(
        self, state: ReleaseState, found: dict[str, list[Judgement]]
    ) -> list[Condition]:
        healthy = state.phase != DEGRADED
        out = [
            Condition(
                "Ready",
                healthy,
                state.phase,
                f"step {state.step}, weight {state.weight}%: {state.reason}",
            )
        ]
        out.append(Condition("Queued", False, "Started", ""))
        shown = found.get("step") or found.get("run")
        if shown:
            outcome = combine(shown)
            out.append(Condition("Analysis", outcome != "fail", outcome, explain(shown)))
        return out
