"""The remediation action registry: a decorated async function with pydantic parameters.

```python
class ShedParams(ActionParams):
    route: str
    percent: int

@action("shed", ShedParams)
async def shed(params: ShedParams, ctx: ActionContext) -> str:
    ...  # act (idempotently: ctx.key names this step of this run), return a summary
```

Raise ``ActionError(message, retry=...)``: the engine retries a retryable error with the
step's back-off, and fails the run at once on a refusal (blast radius, bad target).
Third-party actions register the same way from a module named by an entry point in the
group ``turnout.actions`` (``load_entry_points``). An action must be idempotent on
``ctx.key``: after a restart the step it was in may run again.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from turnout.config.model.remediation import BlastRadius, KubernetesScope
from turnout.control.reconcile.base import Committer
from turnout.control.remediation.breaker import Breakers
from turnout.control.store.records import ObjectKey, StoredObject
from turnout.core.clock import Clock
from turnout.observe.metrics import Aggregate

log = logging.getLogger("turnout.control.remediation")
ENTRY_POINT_GROUP: Final = "turnout.actions"


class ActionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=None, frozen=True)


class ActionError(Exception):
    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True, slots=True)
class ActionContext:
    key: str  # "<run id>-<step index>": names what this step creates, for idempotency
    run_id: str
    namespace: str  # the Runbook's namespace: where the action's objects go
    clock: Clock
    commit: Committer
    objects: Callable[[], Mapping[ObjectKey, StoredObject]]
    limits: BlastRadius
    breakers: Breakers
    timeout: float
    observe: Callable[[], Aggregate] = Aggregate  # this replica's data-plane counters
    # the manifests of a stored revision (``rollback_config``); None without a store
    revision: Callable[[int], Awaitable[list[dict[str, Any]]]] | None = None
    # when the run's alert was resolved (epoch seconds), None while it fires
    resolved: Callable[[], Awaitable[float | None]] | None = None
    # where the Kubernetes actions may act (default: the Runbook's namespace, no nodes)
    kubernetes: KubernetesScope = field(default_factory=KubernetesScope)

    @property
    def now(self) -> float:
        return self.clock.time()


P = TypeVar("P", bound=ActionParams)
ActionFn = Callable[[Any, ActionContext], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class ActionEntry:
    name: str
    params: type[ActionParams]
    fn: ActionFn
    description: str

    def parse(self, raw: Mapping[str, Any]) -> ActionParams:
        try:
            return self.params.model_validate(dict(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            raise ActionError(
                f"action {self.name!r}: params.{where}: {first['msg']}", retry=False
            ) from None


REGISTRY: dict[str, ActionEntry] = {}


def action(
    name: str, params: type[P]
) -> Callable[
    [Callable[[P, ActionContext], Awaitable[str]]], Callable[[P, ActionContext], Awaitable[str]]
]:
    def register(
        fn: Callable[[P, ActionContext], Awaitable[str]],
    ) -> Callable[[P, ActionContext], Awaitable[str]]:
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            raise ValueError(f"action {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        REGISTRY[name] = ActionEntry(name, params, fn, doc[0] if doc else "")
        return fn

    return register


def lookup(name: str) -> ActionEntry:
    load_builtin()
    entry = REGISTRY.get(name)
    if entry is None:
        known = ", ".join(sorted(REGISTRY))
        raise ActionError(f"unknown action {name!r}; known actions: {known}", retry=False)
    return entry


_loaded = False


def load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from turnout.control.remediation import (  # noqa: F401  (registers)
        builtin_actions,
        dataplane_actions,
        k8s_actions,
        release_actions,
        verify,
    )

    load_entry_points()


def load_entry_points() -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # one broken plugin must not stop remediation
            log.warning("remediation action plugin %s failed to load: %s", ep.name, exc)
