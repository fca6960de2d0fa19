"""A release's persisted state and the steps its strategy expands to.

The state machine's state lives in one annotation of the Release object
(``turnout.dev/release-state``, JSON), not in its status: an annotation change is an
object change, so every state change is a store *revision*. That is what makes it
persistent (a restart or a new leader reads the same step), audited (each revision has an
actor and a message), race-safe (writes name the ``resourceVersion`` they saw), and — the
reason it is not in ``status`` — what carries the traffic to the data plane: status-only
writes create no revision, so workers never recompile for them and other replicas see
them only at the next revision, whereas a revision reaches every worker of this replica
through the supervisor's reload and every other replica through the revision feed
(PostgreSQL ``LISTEN``). The snapshot builder reads ``phase`` and ``weight`` from the
same annotation (``turnout.proxy.snapshot.releases``).

Phases: ``Pending`` (no state yet), ``Progressing`` (running step ``step``), ``Paused``
(``hold`` says why: ``human``, or ``step``: an untimed pause step or an analysis that
failed or stayed inconclusive with ``onFailure/onInconclusive: pause``), ``Promoted``
(all traffic on the candidate), ``Aborted`` (all traffic on stable, by a command) and
``Degraded`` (all traffic on stable, by a failed analysis).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, Literal

from turnout.config.model.release import STATE_ANNOTATION, ReleaseSpec
from turnout.core.durations import parse_duration

PENDING: Final = "Pending"
PROGRESSING: Final = "Progressing"
PAUSED: Final = "Paused"
PROMOTED: Final = "Promoted"
ABORTED: Final = "Aborted"
DEGRADED: Final = "Degraded"
PHASES: Final = (PENDING, PROGRESSING, PAUSED, PROMOTED, ABORTED, DEGRADED)
ON_STABLE: Final = frozenset({PENDING, ABORTED, DEGRADED})
LIVE: Final = frozenset({PROGRESSING, PAUSED})

__all__ = ["STATE_ANNOTATION", "ReleaseState", "Step", "plan"]

StepKind = Literal["setWeight", "pause", "analysis"]


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    weight: int = 0  # setWeight
    seconds: float | None = None  # pause (None: until promoted/resumed), analysis (max)

    def describe(self) -> str:
        if self.kind == "setWeight":
            return f"setWeight {self.weight}"
        if self.kind == "pause":
            return "pause" if self.seconds is None else f"pause {self.seconds:g}s"
        return f"analysis (up to {self.seconds:g}s)"


def plan(spec: ReleaseSpec) -> tuple[Step, ...]:
    """The strategy as steps: a canary's own; blue-green and A/B tests judge (if they
    have an analysis) and then wait for promotion unless ``autoPromote``."""
    strategy = spec.strategy
    if strategy.canary is not None:
        steps = []
        for s in strategy.canary.steps:
            if s.set_weight is not None:
                steps.append(Step("setWeight", weight=s.set_weight))
            elif s.pause is not None:
                d = s.pause.duration
                steps.append(Step("pause", seconds=parse_duration(d) if d else None))
            elif s.analysis is not None:
                steps.append(Step("analysis", seconds=parse_duration(s.analysis.duration)))
        return tuple(steps)
    other = strategy.blue_green or strategy.ab_test
    assert other is not None
    steps = []
    if other.analysis is not None:
        steps.append(Step("analysis", seconds=parse_duration(other.analysis.duration)))
    if not other.auto_promote:
        steps.append(Step("pause"))
    return tuple(steps)


@dataclass(frozen=True, slots=True)
class ReleaseState:
    phase: str = PENDING
    step: int = 0
    weight: int = 0  # percent of keyed/random traffic on the candidate
    step_started: float = 0.0  # wall seconds
    generation: int = 0  # the spec generation this run belongs to
    run: int = 1  # bumped by retry
    hold: str = ""  # why Paused: "human" or "step"
    skip_analysis: bool = False
    reason: str = ""  # why the last transition happened, in numbers
    by: str = ""  # who made it: "system:release" or a user
    queued_at: float = 0.0  # wall seconds it entered its environment's queue
    bypass: bool = False  # the audited emergency bypass of queue, schedule and blackouts
    approved: tuple[str, ...] = ()  # manual gates approved, as "gate@step"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> ReleaseState | None:
        raw = annotations.get(STATE_ANNOTATION)
        if not raw:
            return None
        try:
            data: Any = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("phase") not in PHASES:
            return None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if isinstance(known.get("approved"), list):
            known["approved"] = tuple(str(a) for a in known["approved"])
        try:
            return cls(**known)
        except TypeError:
            return None

    def moved(self, now: float, **changes: Any) -> ReleaseState:
        """This state with ``changes``; a new step restarts the step clock."""
        if "step" in changes and changes["step"] != self.step:
            changes.setdefault("step_started", now)
        return replace(self, **changes)
