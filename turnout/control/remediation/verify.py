"""Did the mitigation work? ``verify_error_rate`` judges from the gateway's own counters,
``verify_resolved`` from the alert's resolution; for both, a resolution of the run's
alert received while the step waits counts as success.

A two-attempt step: the first attempt reads the route's upstream answers and 5xx
(``signals.totals``: the gateway's own answers, such as shed 503s, left out) as a
baseline and asks to be retried; give the step ``retries: 1`` (or more) and ``backoff``
as the observation window. The next attempt compares: fewer than ``below`` 5xx among at
least ``minRequests`` answers since the baseline verifies the run; more fails it as "not
effective" (no retry). Too few answers retries again while retries remain. The baseline
lives in this process: after a restart the step takes a new one.

``verify_resolved`` waits for Alertmanager's resolved notification of the run's alert
(same fingerprint and startsAt): give it ``retries`` and ``backoff`` as the window; it
succeeds at the first attempt that finds the resolution and fails the run "not resolved"
when the retries are spent. Internal signals have no resolution: use
``verify_error_rate`` for them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field, StrictInt, StrictStr

from turnout.control.remediation.actions import ActionContext, ActionError, ActionParams, action
from turnout.control.remediation.signals import totals

_BASELINES: dict[str, tuple[int, int]] = {}
MAX_BASELINES = 10_000


class VerifyParams(ActionParams):
    route: StrictStr
    below: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05
    min_requests: Annotated[StrictInt, Field(ge=1)] = Field(default=10, alias="minRequests")


@action("verify_error_rate", VerifyParams)
async def verify_error_rate(params: VerifyParams, ctx: ActionContext) -> str:
    """Verify from the gateway's counters that the route's 5xx share fell below a bound."""
    route = f"{ctx.namespace}/{params.route}"
    resolved = await _resolved(ctx)
    if resolved is not None:
        _BASELINES.pop(ctx.key, None)
        return resolved
    errors, answers = totals(ctx.observe(), route)
    base = _BASELINES.get(ctx.key)
    if base is None:
        if len(_BASELINES) >= MAX_BASELINES:
            _BASELINES.clear()
        _BASELINES[ctx.key] = (errors, answers)
        raise ActionError(f"verifying {route}: baseline taken, judging after the back-off")
    d_errors, d_answers = errors - base[0], answers - base[1]
    if d_answers < params.min_requests:
        raise ActionError(
            f"verifying {route}: {d_answers} answers so far, need {params.min_requests}"
        )
    _BASELINES.pop(ctx.key, None)
    rate = d_errors / d_answers
    if rate >= params.below:
        raise ActionError(
            f"not effective: {rate:.0%} of {d_answers} answers of {route} are still 5xx "
            f"(want < {params.below:.0%})",
            retry=False,
        )
    return f"verified: {rate:.0%} of {d_answers} answers of {route} are 5xx"


async def _resolved(ctx: ActionContext) -> str | None:
    if ctx.resolved is None:
        return None
    at = await ctx.resolved()
    if at is None:
        return None
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    return f"verified: the alert resolved (received {stamp})"


class ResolvedParams(ActionParams):
    pass


@action("verify_resolved", ResolvedParams)
async def verify_resolved(params: ResolvedParams, ctx: ActionContext) -> str:
    """Verify that the alert that started the run has resolved (Alertmanager's resolved
    notification); retried with the step's back-off until its retries are spent."""
    if ctx.resolved is None:
        raise ActionError("verify_resolved: this run's alert cannot resolve", retry=False)
    resolved = await _resolved(ctx)
    if resolved is None:
        raise ActionError("not resolved: the alert still fires")
    return resolved
