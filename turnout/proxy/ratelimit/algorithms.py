"""Sans-IO rate-limit math: the token bucket and the sliding-window counter.

Both algorithms are functions of a three-number state, the current time ``now`` (in
seconds, on whatever clock the caller uses) and a ``cost``; they update the state in place
(``State``: three words at an offset of a list or ``memoryview``, so the shared table is
updated without a tuple per call) and return the ``Decision``. The stores own the state
and the clock: ``local.LocalStore`` keeps it in
a shared-memory slot and passes ``time.monotonic()``, ``redis_store`` runs the same math in
Lua against the Redis server's ``TIME`` (the scripts there mirror these functions line by
line, and a test checks them against each other). Nothing here does I/O, so every edge is
unit-tested with explicit times.

An all-zero state is "never seen": a new or evicted slot needs no initialisation.

**Token bucket** (Envoy ``local_ratelimit``, Traefik, KrakenD): ``rate`` tokens per
``interval`` seconds refill a bucket of ``burst`` tokens; a request takes ``cost`` tokens.
The state is ``(debt, stamp, 0)``: ``debt`` is how many tokens are missing from a full
bucket at time ``stamp``. Storing the debt rather than the level makes the zero state a
full bucket. A refill rate of zero is not accepted (the bucket would never refill and its
Redis key could never expire); a quota that must not refill within a test or a day is a
token bucket with a long ``interval``.

**Sliding-window counter** (APISIX ``limit-count`` with ``window_type: sliding``, the
Cloudflare approximation): windows of ``window`` seconds are aligned to the clock's epoch;
the state is ``(window index, count in the current window, count in the previous one)``
and the estimate is ``previous * (1 - elapsed / window) + current``. It needs O(1) memory
per key, unlike a sliding log, and is exact about the current window while smoothing the
boundary burst of a fixed window.

Reported times (``Decision``):
- ``reset_after``: seconds until the whole quota is available again (``remaining`` back to
  ``limit``); this is what ``RateLimit-Reset`` carries.
- ``retry_after``: for a denial, seconds until a request of the same ``cost`` would be
  allowed (``Retry-After``); 0 when allowed. A cost above the limit can never be allowed;
  its ``retry_after`` is then the policy window (``window``), a back-off, not a promise.

Floating-point refill (``elapsed * rate``) is compared with a tolerance of ``EPS`` tokens,
so a bucket that refilled "exactly" one token after ``interval / rate`` seconds allows one
request even when the product rounds to 0.9999999999.
"""

from __future__ import annotations

import math
from typing import Final, Protocol

EPS: Final = 1e-9


class Decision:
    """The outcome of one rate-limit check.

    ``remaining`` is ``None`` when it is unknown (the Redis store failed and the rule fails
    open or closed); ``degraded`` is then ``True``. A degraded denial is a store failure
    (503), not a rate limit (429).
    """

    __slots__ = ("allowed", "degraded", "limit", "remaining", "reset_after", "retry_after")

    def __init__(
        self,
        allowed: bool,
        limit: int,
        remaining: int | None,
        reset_after: float,
        retry_after: float,
        degraded: bool = False,
    ) -> None:
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.reset_after = reset_after
        self.retry_after = retry_after
        self.degraded = degraded

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed}, limit={self.limit}, remaining={self.remaining},"
            f" reset_after={self.reset_after:.6g}, retry_after={self.retry_after:.6g},"
            f" degraded={self.degraded})"
        )


class State(Protocol):
    """Where an algorithm's three state words live: ``s[j]``, ``s[j + 1]``, ``s[j + 2]``.

    A ``list`` in tests, a ``memoryview`` of ``float64`` over the shared table in
    ``local``. The algorithm reads and writes its words in place (no tuple per call).
    """

    def __getitem__(self, index: int, /) -> float: ...
    def __setitem__(self, index: int, value: float, /) -> None: ...


class TokenBucket:
    """``rate`` tokens per ``interval`` seconds into a bucket of ``burst`` tokens."""

    __slots__ = ("burst", "interval", "limit", "per_second", "rate", "window")

    kind: Final = "token_bucket"

    def __init__(self, rate: int, interval: float, burst: int) -> None:
        if rate <= 0:
            raise ValueError("token bucket: rate must be > 0 (use a long interval instead)")
        if not interval > 0 or math.isinf(interval):
            raise ValueError("token bucket: interval must be a positive number of seconds")
        if burst < 1:
            raise ValueError("token bucket: burst must be >= 1")
        self.rate = rate
        self.interval = float(interval)
        self.burst = burst
        self.limit = burst
        self.per_second = rate / self.interval
        # The quota policy as advertised: ``burst`` requests per the time a full refill
        # takes, which is the bucket's long-run rate.
        self.window = burst / self.per_second

    def step(self, s: State, j: int, now: float, cost: int) -> Decision:
        """State ``s[j:j+3]`` = (debt, stamp, unused)."""
        per = self.per_second
        burst = self.burst
        level = s[j]
        stamp = s[j + 1]
        if now > stamp:
            level -= (now - stamp) * per
            if level < 0.0:
                level = 0.0
            s[j + 1] = now
        after = level + cost
        if after <= burst + EPS:
            s[j] = after
            return Decision(True, burst, int(burst - after + EPS), after / per, 0.0, False)
        s[j] = level
        retry = (after - burst) / per if cost <= burst else self.window
        return Decision(False, burst, int(burst - level + EPS), level / per, retry, False)


class SlidingWindow:
    """At most ``requests`` per sliding ``window`` seconds (sliding-window counter)."""

    __slots__ = ("limit", "requests", "window")

    kind: Final = "sliding_window"

    def __init__(self, requests: int, window: float) -> None:
        if requests < 1:
            raise ValueError("sliding window: requests must be >= 1")
        if not window > 0 or math.isinf(window):
            raise ValueError("sliding window: window must be a positive number of seconds")
        self.requests = requests
        self.limit = requests
        self.window = float(window)

    def step(self, s: State, j: int, now: float, cost: int) -> Decision:
        """State ``s[j:j+3]`` = (window index, count in it, count in the one before)."""
        window = self.window
        limit = self.requests
        idx = now // window
        cur = s[j + 1]
        if idx != s[j]:
            prev = cur if idx == s[j] + 1.0 else 0.0
            cur = 0.0
            s[j] = idx
            s[j + 2] = prev
        else:
            prev = s[j + 2]
        elapsed = now - idx * window
        used = prev * (1.0 - elapsed / window) + cur
        if used + cost <= limit + EPS:
            cur += cost
            used += cost
            allowed = True
            retry = 0.0
        else:
            allowed = False
            retry = _window_retry(window, elapsed, limit, cur, prev, cost)
        s[j + 1] = cur
        remaining = int(limit - used + EPS)
        if remaining < 0:
            remaining = 0
        if cur > 0.0:
            reset = 2.0 * window - elapsed
        elif prev > 0.0:
            reset = window - elapsed
        else:
            reset = 0.0
        return Decision(allowed, limit, remaining, reset, retry, False)  # all positional: faster


def _window_retry(
    window: float, elapsed: float, limit: int, cur: float, prev: float, cost: int
) -> float:
    """Seconds until ``prev * (1 - t / window) + cur + cost <= limit`` (denied now)."""
    if cur + cost <= limit and prev > 0.0:
        # The previous window's weight decays enough before this window ends.
        t = window * (1.0 - (limit - cur - cost) / prev) - elapsed
        return t if t > 0.0 else 0.0
    if cur > 0.0 and cost <= limit:
        # Only in the next window, once the current count (then "previous") decays.
        fraction = 1.0 - (limit - cost) / cur
        if fraction < 0.0:
            fraction = 0.0
        return (window - elapsed) + fraction * window
    return window  # cost > limit: never allowed; back off for a window


Algorithm = TokenBucket | SlidingWindow


class Stepper(Protocol):
    """What ``local.LocalStore.decide`` runs on a slot: the algorithms above, or another
    three-word state machine (``filters.bruteforce.BanCounter``)."""

    def step(self, s: State, j: int, now: float, cost: int) -> Decision: ...
