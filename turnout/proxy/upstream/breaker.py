"""Circuit breaking for one backend in one worker: concurrency limits and an error-rate breaker.

``BackendGuard`` holds Envoy's four limits (connections, pending requests, parallel
requests, parallel retries) as plain counters the request path increments and
decrements; ``admit``/``admit_pending``/``admit_retry`` return the name of the limit a
new request would exceed, or ``b""``. The limits are per worker process: with N workers a
backend sees at most N × each limit from one host.

``ErrorRateBreaker`` is the classic three-state breaker. *Closed*: outcomes are counted in
one-second buckets over ``window`` seconds; when at least ``minimum_requests`` outcomes
are in the window and the error share reaches ``threshold`` percent, it *opens*: every
request is refused at once for ``open_duration``. Then it is *half-open*: up to
``half_open_requests`` requests go through; if they all succeed it closes (and forgets
the window), if one fails it opens again. Errors are 5xx responses and gateway failures
(connect errors, resets, timeouts). Transitions are reported through ``on_transition`` so
they reach the metrics.

Guards outlive configuration snapshots (the runtime keeps them by backend name), so a
reload neither resets an open breaker nor forgets requests in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

CLOSED: Final = 0
OPEN: Final = 1
HALF_OPEN: Final = 2
STATE_NAMES: Final = ("closed", "open", "half_open")


class ErrorRateBreaker:
    __slots__ = (
        "_errors",
        "_passed",
        "_probes",
        "_second",
        "_totals",
        "half_open_requests",
        "minimum_requests",
        "on_transition",
        "open_duration",
        "open_until",
        "state",
        "threshold",
        "window",
    )

    def __init__(
        self,
        threshold: int,
        minimum_requests: int,
        window: float,
        open_duration: float,
        half_open_requests: int,
        on_transition: Callable[[int], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.minimum_requests = minimum_requests
        self.window = max(1, int(window))
        self.open_duration = open_duration
        self.half_open_requests = half_open_requests
        self.on_transition = on_transition
        self.state = CLOSED
        self.open_until = 0.0
        self._totals = [0] * self.window
        self._errors = [0] * self.window
        self._second = 0  # the absolute second the newest bucket belongs to
        self._probes = 0  # requests let through while half-open
        self._passed = 0  # of which succeeded

    def configure(
        self,
        threshold: int,
        minimum_requests: int,
        window: float,
        open_duration: float,
        half_open_requests: int,
    ) -> None:
        """Take new settings from a reload, keeping the state and, when it fits, the window."""
        self.threshold = threshold
        self.minimum_requests = minimum_requests
        self.open_duration = open_duration
        self.half_open_requests = half_open_requests
        size = max(1, int(window))
        if size != self.window:
            self.window = size
            self._totals = [0] * size
            self._errors = [0] * size

    def _set(self, state: int) -> None:
        self.state = state
        if self.on_transition is not None:
            self.on_transition(state)

    def allow(self, now: float) -> bool:
        """May a request go to the backend now? (Counts half-open probes.)"""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN:
            if now < self.open_until:
                return False
            self._set(HALF_OPEN)
            self._probes = 0
            self._passed = 0
        if self._probes >= self.half_open_requests:
            return False
        self._probes += 1
        return True

    def record(self, ok: bool, now: float) -> None:
        state = self.state
        if state == HALF_OPEN:
            if not ok:
                self._trip(now)
            else:
                self._passed += 1
                if self._passed >= self.half_open_requests:
                    self._reset_window()
                    self._set(CLOSED)
            return
        if state == OPEN:
            return  # an answer to a request admitted before the breaker opened
        second = int(now)
        self._advance(second)
        i = second % self.window
        self._totals[i] += 1
        if not ok:
            self._errors[i] += 1
            total = sum(self._totals)
            if total >= self.minimum_requests and sum(self._errors) * 100 >= (
                self.threshold * total
            ):
                self._trip(now)

    def _trip(self, now: float) -> None:
        self.open_until = now + self.open_duration
        self._reset_window()
        self._set(OPEN)

    def _advance(self, second: int) -> None:
        gap = second - self._second
        if gap <= 0:
            return
        if gap >= self.window:
            self._reset_window()
        else:
            for s in range(self._second + 1, second + 1):
                i = s % self.window
                self._totals[i] = 0
                self._errors[i] = 0
        self._second = second

    def _reset_window(self) -> None:
        for i in range(self.window):
            self._totals[i] = 0
            self._errors[i] = 0


# Names of the limits, as they appear in the response header and the metrics.
MAX_CONNECTIONS: Final = b"max-connections"
MAX_PENDING: Final = b"max-pending-requests"
MAX_REQUESTS: Final = b"max-parallel-requests"
MAX_RETRIES: Final = b"max-parallel-retries"
BREAKER_OPEN: Final = b"error-rate"


class BackendGuard:
    """Concurrency counters and limits of one backend in this worker."""

    __slots__ = (
        "active",
        "breaker",
        "max_connections",
        "max_pending",
        "max_requests",
        "max_retries",
        "pending",
        "retries",
    )

    def __init__(self) -> None:
        self.max_connections = 1 << 30
        self.max_pending = 1 << 30
        self.max_requests = 1 << 30
        self.max_retries = 1 << 30
        self.active = 0  # requests in flight to this backend
        self.pending = 0  # requests waiting for an upstream connection
        self.retries = 0  # retries in flight
        self.breaker: ErrorRateBreaker | None = None

    def admit(self, now: float) -> bytes:
        """``b""`` when a new request may go ahead, else the name of the limit it hits."""
        if self.active >= self.max_requests:
            return MAX_REQUESTS
        breaker = self.breaker
        if breaker is not None and not breaker.allow(now):
            return BREAKER_OPEN
        return b""

    def record(self, ok: bool, now: float) -> None:
        breaker = self.breaker
        if breaker is not None:
            breaker.record(ok, now)
