"""A consecutive-failure circuit breaker with half-open probing, sans-IO (explicit ``now``).

It guards the Redis store so that a Redis that hangs (``SIGSTOP``, a network partition,
a full failover) costs each request at most one call timeout for a handful of requests,
and then nothing: after ``threshold`` consecutive failures the breaker *opens* and every
call is answered at once by the rule's failure mode without touching Redis. After
``cooldown`` seconds it lets exactly one call through (*half-open*); while that probe is
in flight every other call is still short-circuited. A successful probe closes the
breaker, a failed one opens it for another ``cooldown``. Any success resets the
consecutive-failure count.

**A stall of our own counts once.** When the worker's event loop (or its whole process)
is held up past a call's deadline, every call in flight times out at the same instant,
late: with 8 concurrent calls that was 8 "consecutive" failures, enough to open the
breaker although the store had answered nothing wrong. That is what kept re-opening it
after a Redis partition ended, on a loaded machine (docs/reliability.md). So the caller
passes ``since`` (when the call started) for such a late timeout, and it is counted only
if the call started after the last counted failure: one stall seen by N calls counts
once. Timeouts that fire on time (a frozen or partitioned store) still count one each.

States and transitions (KrakenD's ``max_errors``/``timeout`` breaker and APISIX
``api-breaker`` work the same way; Tyk's is rate-based instead)::

    CLOSED --threshold consecutive failures--> OPEN --cooldown--> HALF_OPEN (one probe)
    HALF_OPEN --success--> CLOSED      HALF_OPEN --failure--> OPEN

It is per worker process and not thread-safe: each worker's event loop owns one.
Hand-written because it must be sans-IO (explicit ``now``, tested without sleeping) and
cost a few attribute reads per call; ``pybreaker``, the maintained library, wraps the call
itself, takes a thread lock, reads the wall clock (``datetime``) and does async only
through Tornado.
"""

from __future__ import annotations

from typing import Final

CLOSED: Final = 0
OPEN: Final = 1
HALF_OPEN: Final = 2

_NAMES: Final = ("closed", "open", "half-open")


class Breaker:
    __slots__ = (
        "cooldown",
        "failed_at",
        "failures",
        "opened_at",
        "opens",
        "state",
        "threshold",
    )

    def __init__(self, threshold: int = 5, cooldown: float = 1.0) -> None:
        if threshold < 1:
            raise ValueError("breaker threshold must be >= 1")
        if cooldown < 0:
            raise ValueError("breaker cooldown must be >= 0")
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self.failed_at = float("-inf")  # when the last counted failure was recorded
        self.opens = 0  # how many times it opened (a counter for stats)

    @property
    def state_name(self) -> str:
        return _NAMES[self.state]

    def allow(self, now: float) -> bool:
        """May a call go to the store now? ``True`` in HALF_OPEN means "you are the probe"."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN and now - self.opened_at >= self.cooldown:
            self.state = HALF_OPEN
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.state = CLOSED

    def failure(self, now: float, since: float | None = None) -> None:
        """A call failed. ``since``: when it started, given only for a timeout that fired
        late (the caller's own stall); it is then ignored if the call was already in
        flight when the last failure was counted."""
        if since is not None and since < self.failed_at:
            return
        self.failed_at = now
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            if self.state != OPEN:
                self.opens += 1
            self.state = OPEN
            self.opened_at = now

    def abandoned(self, now: float) -> None:
        """A call ended without an answer either way (its task was cancelled).

        If it was the probe, the breaker goes back to OPEN with the cooldown already
        elapsed, so the next call probes instead of the breaker waiting for an answer
        that will never come.
        """
        if self.state == HALF_OPEN:
            self.state = OPEN
            self.opened_at = now - self.cooldown

    def retry_in(self, now: float) -> float:
        """Seconds until the next probe may go (0 when closed or half-open)."""
        if self.state != OPEN:
            return 0.0
        left = self.opened_at + self.cooldown - now
        return left if left > 0.0 else 0.0
