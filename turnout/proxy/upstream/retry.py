"""Retry policies: when a failed attempt is tried again, how long to wait, and how many.

A ``RetryPolicy`` is compiled at snapshot build from a Backend's ``retry`` (Envoy
Gateway's shape: triggers, status codes, per-try timeout, back-off, budget) or from an
HTTPRoute rule's ``retry`` (Gateway API: ``codes``, ``attempts``, ``backoff``), the
route's taking precedence. The Gateway API retries connection errors whatever the codes
(its conformance suite checks it), so a route policy always has the connect-failure and
reset triggers.

Back-off is exponential with jitter: attempt *n* waits a uniformly random time between
half and all of ``min(max_interval, base × 2^(n-1))``, never less than ``base`` for a
Gateway API policy (whose ``backoff`` is a minimum). The retry budget bounds retries in
flight for a backend to ``max(min_concurrency, percent × active requests)``, so retries
cannot multiply the load of a failing backend (Envoy's retry budget).

Whether a request *can* be retried is the exchange's business: its body must still be
replayable (see ``attempts.REPLAY_LIMIT``) and no response byte may have reached the client.
"""

from __future__ import annotations

from typing import Final

from turnout.config.model.backend import RetrySpec
from turnout.config.model.routes import HTTPRouteRetry
from turnout.core.durations import parse_duration

GATEWAY_STATUSES: Final = frozenset({502, 503, 504})


class RetryPolicy:
    __slots__ = (
        "backoff_base",
        "backoff_floor",
        "backoff_max",
        "budget_min",
        "budget_percent",
        "codes",
        "on_5xx",
        "on_connect",
        "on_gateway",
        "on_reset",
        "per_try_timeout",
        "retries",
    )

    def __init__(
        self,
        retries: int,
        *,
        on_connect: bool = True,
        on_reset: bool = True,
        on_5xx: bool = False,
        on_gateway: bool = False,
        codes: frozenset[int] = frozenset(),
        per_try_timeout: float = 0.0,
        backoff_base: float = 0.025,
        backoff_max: float = 0.25,
        backoff_floor: float = 0.0,
        budget_percent: int = 20,
        budget_min: int = 3,
    ) -> None:
        self.retries = retries
        self.on_connect = on_connect
        self.on_reset = on_reset
        self.on_5xx = on_5xx
        self.on_gateway = on_gateway
        self.codes = codes
        self.per_try_timeout = per_try_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.backoff_floor = backoff_floor
        self.budget_percent = budget_percent
        self.budget_min = budget_min

    def retry_status(self, status: int) -> bool:
        if status >= 500 and self.on_5xx:
            return True
        if self.on_gateway and status in GATEWAY_STATUSES:
            return True
        return status in self.codes

    def backoff(self, attempt: int, rand: float) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based); ``rand`` in [0, 1)."""
        ceiling = min(self.backoff_max, self.backoff_base * (1 << min(attempt - 1, 20)))
        return max(self.backoff_floor, ceiling * (0.5 + 0.5 * rand))

    def budget(self, active: int) -> int:
        """How many retries may be in flight for a backend with ``active`` requests."""
        return max(self.budget_min, active * self.budget_percent // 100)


def backend_policy(spec: RetrySpec) -> RetryPolicy:
    triggers = set(spec.retry_on.triggers)
    base = parse_duration(spec.per_retry.back_off.base_interval)
    cap = spec.per_retry.back_off.max_interval
    return RetryPolicy(
        spec.num_retries,
        on_connect="connect-failure" in triggers,
        on_reset="reset" in triggers,
        on_5xx="5xx" in triggers,
        on_gateway="gateway-error" in triggers,
        codes=(
            frozenset(spec.retry_on.http_status_codes)
            if "retriable-status-codes" in triggers
            else frozenset()
        ),
        per_try_timeout=parse_duration(spec.per_retry.timeout) if spec.per_retry.timeout else 0.0,
        backoff_base=base,
        backoff_max=parse_duration(cap) if cap else base * 10,
        budget_percent=spec.budget.percent,
        budget_min=spec.budget.min_retry_concurrency,
    )


def route_policy(retry: HTTPRouteRetry, backend: RetryPolicy | None) -> RetryPolicy:
    """A Gateway API rule ``retry``; the backend's policy supplies what it leaves out."""
    base = parse_duration(retry.backoff) if retry.backoff else 0.0
    fallback = backend if backend is not None else RetryPolicy(1)
    return RetryPolicy(
        retry.attempts if retry.attempts is not None else fallback.retries,
        on_connect=True,
        on_reset=True,
        codes=frozenset(retry.codes),
        on_5xx=False if retry.codes else fallback.on_5xx,
        on_gateway=False if retry.codes else fallback.on_gateway,
        per_try_timeout=fallback.per_try_timeout,
        backoff_base=base or fallback.backoff_base,
        backoff_max=(base * 10) if base else fallback.backoff_max,
        backoff_floor=base,
        budget_percent=fallback.budget_percent,
        budget_min=fallback.budget_min,
    )
