"""A circuit breaker (closed → open → half-open) for every call that leaves the process.

Closed: calls pass; ``failure_threshold`` consecutive failures open it. Open: calls fail
at once with ``BreakerOpen`` (a clear reason, no waiting on a dead dependency) until
``reset_timeout`` has passed; then one trial call is let through (half-open): success
closes it, failure opens it again. Every call is bounded by its timeout. State and
transition counts are kept per breaker (``snapshot``) for the API and metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from turnout.core.clock import SYSTEM_CLOCK, Clock

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"

T = TypeVar("T")


class BreakerOpen(Exception):
    pass


@dataclass(slots=True)
class CircuitBreaker:
    name: str
    failure_threshold: int = 3
    reset_timeout: float = 30.0
    clock: Clock = SYSTEM_CLOCK
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_running: bool = False
    last_error: str = ""
    transitions: dict[str, int] = field(default_factory=dict)

    def _move(self, state: str) -> None:
        if state != self.state:
            key = f"{self.state}->{state}"
            self.transitions[key] = self.transitions.get(key, 0) + 1
            self.state = state

    def check(self) -> None:
        """Raise ``BreakerOpen`` unless a call may go out now."""
        if self.state == OPEN and self.clock.time() - self.opened_at >= self.reset_timeout:
            self._move(HALF_OPEN)
        if self.state == OPEN or (self.state == HALF_OPEN and self.trial_running):
            raise BreakerOpen(
                f"circuit breaker {self.name!r} is open after {self.failures} failures "
                f"(last: {self.last_error}); next try after {self.reset_timeout:g}s"
            )
        if self.state == HALF_OPEN:
            self.trial_running = True

    def succeeded(self) -> None:
        self.failures = 0
        self.trial_running = False
        self._move(CLOSED)

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        self.trial_running = False
        if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
            self.opened_at = self.clock.time()
            self._move(OPEN)

    async def call(self, make: Callable[[], Awaitable[T]], limit: float) -> T:
        self.check()
        try:
            async with asyncio.timeout(limit):
                result = await make()
        except Exception as exc:
            self.failed(_describe(exc, limit))
            raise
        self.succeeded()
        return result

    def snapshot(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "failures": self.failures,
            "lastError": self.last_error,
            "transitions": dict(self.transitions),
        }


def _describe(exc: Exception, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


@dataclass(slots=True)
class Breakers:
    """The breakers of one process, one per dependency name, created on first use."""

    clock: Clock = SYSTEM_CLOCK
    failure_threshold: int = 3
    reset_timeout: float = 30.0
    by_name: dict[str, CircuitBreaker] = field(default_factory=dict)

    def get(self, name: str) -> CircuitBreaker:
        breaker = self.by_name.get(name)
        if breaker is None:
            breaker = self.by_name[name] = CircuitBreaker(
                name, self.failure_threshold, self.reset_timeout, self.clock
            )
        return breaker

    def snapshot(self) -> list[dict[str, object]]:
        return [b.snapshot() for b in self.by_name.values()]
