"""Clocks: where the control plane reads the time, so that tests can set it.

A ``Clock`` gives wall time (``time()``, seconds since the epoch, for timestamps and for
deadlines that must survive a restart, such as a Sandbox's expiry) and monotonic time
(``monotonic()``, for intervals within one process). It never sleeps: scheduling is the
caller's job (the reconcile manager arms a loop timer for the next due time it computes
from the clock), so a fake clock advanced by hand drives the same code without sleeping.
``turnout.testing.clock.FakeClock`` is that fake; production code uses ``SYSTEM_CLOCK``.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime
from typing import Final, Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go backwards."""
        ...


class SystemClock:
    """The real clocks of the operating system."""

    __slots__ = ()

    def time(self) -> float:
        return _time.time()

    def monotonic(self) -> float:
        return _time.monotonic()


SYSTEM_CLOCK: Final = SystemClock()


def utcnow(clock: Clock) -> datetime:
    """The clock's wall time as a timezone-aware UTC ``datetime``."""
    return datetime.fromtimestamp(clock.time(), UTC)
