"""Flagger-compatible release webhooks: the gates the reconciler asks before it moves.

Each webhook is ``POST url`` with Flagger's payload (``name``, ``namespace``, ``phase``,
``metadata``) and the webhook's ``timeout``. ``evaluate`` asks only the webhooks that
matter at this point of the release and returns, for every *configured* gate type,
``(open, why)``: a gate not asked now is closed (``machine.tick`` holds there and the
next tick asks it). All webhooks of one type must answer 2xx. ``confirm-*`` gates hold
the release while closed; ``pre-rollout`` closed fails the release; ``rollback`` *open*
(2xx) rolls it back. ``notify`` tells the ``post-rollout`` webhooks the outcome (best
effort, errors logged).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import httpx

from turnout.config.model.release import ReleaseSpec, WebhookSpec
from turnout.control.releases.state import PROGRESSING, ReleaseState, Step
from turnout.core.durations import parse_duration

log = logging.getLogger("turnout.control.releases")

Gates = dict[str, tuple[bool, str]]
GATE_TYPES: Final = (
    "confirm-rollout",
    "pre-rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "rollback",
)


async def call(
    client: httpx.AsyncClient, hook: WebhookSpec, namespace: str, name: str, phase: str
) -> tuple[bool, str]:
    payload = {"name": name, "namespace": namespace, "phase": phase, "metadata": hook.metadata}
    try:
        resp = await client.post(hook.url, json=payload, timeout=parse_duration(hook.timeout))
    except httpx.HTTPError as exc:
        return False, f"webhook {hook.name} ({hook.type}) failed: {type(exc).__name__}"
    ok = 200 <= resp.status_code < 300
    return ok, f"webhook {hook.name} ({hook.type}) answered {resp.status_code}"


def _asked(steps: Sequence[Step], state: ReleaseState) -> set[str]:
    """The gate types worth asking now."""
    asked = {"rollback"}
    if state.phase != PROGRESSING:
        return asked
    if state.step == 0 and state.weight == 0:
        asked |= {"confirm-rollout", "pre-rollout"}
    if state.step < len(steps) and steps[state.step].kind == "setWeight":
        asked.add("confirm-traffic-increase")
    if state.step >= len(steps) - 1:
        asked.add("confirm-promotion")
    return asked


async def evaluate(
    client: httpx.AsyncClient,
    spec: ReleaseSpec,
    steps: Sequence[Step],
    state: ReleaseState,
    namespace: str,
    name: str,
) -> Gates:
    gates: Gates = {}
    asked = _asked(steps, state)
    for kind in GATE_TYPES:
        hooks = [h for h in spec.webhooks if h.type == kind]
        if not hooks:
            continue
        if kind not in asked:
            gates[kind] = (False, f"waiting to ask the {kind} webhooks")
            continue
        results = [await call(client, h, namespace, name, state.phase) for h in hooks]
        closed = [why for ok, why in results if not ok]
        gates[kind] = (not closed, "; ".join(closed) or "; ".join(why for _, why in results))
    return gates


async def notify(
    client: httpx.AsyncClient, spec: ReleaseSpec, namespace: str, name: str, phase: str
) -> None:
    for hook in spec.webhooks:
        if hook.type == "post-rollout":
            ok, why = await call(client, hook, namespace, name, phase)
            if not ok:
                log.warning("release %s/%s: %s", namespace, name, why)
