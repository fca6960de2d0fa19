"""Endpoint health state, sans-IO: active-check verdicts and passive outlier detection.

``EndpointHealth`` is the per-worker, per-address record every balancer reads on every
pick. It lives on the ``EndpointPool`` (which outlives configuration snapshots), so a
reload keeps verdicts, ejections and in-flight counts. ``available(now)`` is two
attribute reads in the common case. Ejections expire *lazily*: no timer runs; the first
``available()`` (or ``ejected_now()``) call at or after ``ejected_until`` clears the
ejection and sets ``available_since`` to the moment the ejection ended (not the moment it
was noticed), so slow start ramps from the right instant however late someone looks.

``ActiveState`` turns a stream of probe results into a verdict with Envoy's hysteresis:
``unhealthy_threshold`` consecutive failures flip a healthy endpoint to unhealthy and
``healthy_threshold`` consecutive successes flip it back. The asyncio prober
(``probe.py``) owns one per target; it runs in the supervisor, and the verdicts reach the
workers' ``EndpointHealth.set_active``.

``OutlierDetector`` is Envoy's consecutive-errors outlier detection, one per (backend,
worker). The caller reports every upstream outcome with ``on_response(health, status,
now, total)``: ``status`` is the HTTP status, or 0 for a locally originated failure
(connect failure, reset, timeout). Like Envoy with ``split_external_local_origin_errors``
off, a local failure counts both as a 5xx and as a gateway error:

- any 5xx (and 0) increments ``consecutive_5xx``;
- 502/503/504 (and 0) increment ``consecutive_gateway``; another 5xx resets it;
- a status below 500 resets both.

When a counter reaches its threshold (0 disables that detector) the endpoint is ejected
for ``base_ejection_time × n`` seconds, where ``n`` counts its ejections, capped at
``max_ejection_time``. As in Envoy, ``n`` decays: each full ``interval`` an endpoint
spends back in service forgives one earlier ejection (computed lazily at the next
ejection). At most ``max_ejection_percent`` % of the backend's endpoints (rounded down)
are ejected at once, but one ejection is always allowed while the percentage is above 0
(Envoy's documented "will eject at least one host regardless of the value"). Unlike
Envoy, which fires only when a counter *equals* its threshold, a counter at or above it
retries the ejection on every further error, so an endpoint refused for lack of room is
ejected as soon as room frees up. Outcomes reported while an endpoint is ejected (late
responses of requests sent before) are ignored. The consecutive counters live on the
``EndpointHealth`` (no dictionary lookup per response); two backends that share an
address therefore share them.

Across workers: with a host-wide ``ejections.EjectionTable`` attached (``share``), the
consecutive counters, the ejection and its multiplier live in the table's row for the
endpoint, not in this worker's record: the detector counts under the row's lock, and
every ``available()`` first adopts an ``ejected_until`` another worker wrote, so the
threshold counts the host's consecutive errors and one ejection holds everywhere.

Clock: every ``now`` is ``time.perf_counter()`` seconds, as ``ejected_until`` is.
This module is compiled with mypyc: everything is typed, classes have ``__slots__``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from turnout.proxy.upstream.ejections import EjectionTable

GATEWAY_ERRORS: Final = (0, 502, 503, 504)


class EndpointHealth:
    """Health of one address as seen by one worker; shared by every snapshot and backend."""

    __slots__ = (
        "active_ok",
        "available_since",
        "cells",
        "consecutive_5xx",
        "consecutive_gateway",
        "ejected_until",
        "ejections",
        "inflight",
        "key",
        "released_at",
        "row",
        "seen_until",
        "shared",
        "times_ejected",
    )

    def __init__(self, key: str = "") -> None:
        self.key = key
        self.active_ok = True  # last verdict of active checks (True when none configured)
        self.ejected_until = 0.0  # perf_counter() time the ejection ends; 0 = not ejected
        self.available_since = 0.0  # when it last became available (slow start); 0 = always
        self.inflight = 0  # requests in flight to it from this worker (least-request)
        self.ejections = 0  # total ejections so far (a monotonic counter, for metrics)
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.times_ejected = 0  # the ejection-time multiplier (decays, see OutlierDetector)
        self.released_at = 0.0  # when the last ejection ended (for the multiplier's decay)
        self.shared: EjectionTable | None = None  # the host-wide table, when attached
        self.cells: memoryview[float] | None = None  # its words (doubles); None = this worker's own
        self.row = 0  # this endpoint's row in ``cells``
        self.seen_until = 0.0  # the table's ejected_until last adopted

    def share(self, table: EjectionTable) -> None:
        """Keep outlier state in the host-wide ``table`` from now on (idempotent)."""
        if self.shared is table:
            return
        row = table.row_for(self.key)
        if row < 0:
            return  # the table is full: this worker's own state, as before
        self.shared = table
        self.cells = table.cells
        self.row = row

    def pull(self) -> None:
        """Adopt an ejection another worker wrote into the shared row."""
        cells = self.cells
        if cells is not None:
            until = cells[self.row + 1]
            if until != self.seen_until:
                self.seen_until = until
                self.ejected_until = until

    def load(self) -> None:
        """Row → this record (under the row's lock)."""
        cells = self.cells
        if cells is not None:
            row = self.row
            self.pull()
            self.released_at = cells[row + 2]
            self.consecutive_5xx = int(cells[row + 3])
            self.consecutive_gateway = int(cells[row + 4])
            self.times_ejected = int(cells[row + 5])

    def store(self) -> None:
        """This record → row (under the row's lock)."""
        cells = self.cells
        if cells is not None:
            row = self.row
            cells[row + 1] = self.seen_until = self.ejected_until
            cells[row + 2] = self.released_at
            cells[row + 3] = float(self.consecutive_5xx)
            cells[row + 4] = float(self.consecutive_gateway)
            cells[row + 5] = float(self.times_ejected)

    def available(self, now: float) -> bool:
        """``active_ok`` and not ejected at ``now``; ends an expired ejection on the way."""
        if self.cells is not None:
            self.pull()
        until = self.ejected_until
        if now < until:
            return False
        if until:
            self._release(until)
        return self.active_ok

    def ejected_now(self, now: float) -> bool:
        """Whether outlier detection holds it out at ``now`` (for metrics and status)."""
        if self.cells is not None:
            self.pull()
        until = self.ejected_until
        if now < until:
            return True
        if until:
            self._release(until)
        return False

    def set_active(self, ok: bool, now: float) -> None:
        """Apply an active-check verdict; a return to health restarts slow start."""
        if ok and not self.active_ok:
            ejected = self.ejected_now(now)  # ends an expired ejection while still inactive
            self.active_ok = True
            if not ejected:
                self.available_since = now
        else:
            self.active_ok = ok

    def _release(self, until: float) -> None:
        self.ejected_until = 0.0
        if self.active_ok:
            self.available_since = until

    def __repr__(self) -> str:
        return (
            f"<EndpointHealth {self.key} active_ok={self.active_ok}"
            f" ejected_until={self.ejected_until:.3f} inflight={self.inflight}>"
        )


def ejected_count(healths: Iterable[EndpointHealth], now: float) -> int:
    """How many of ``healths`` outlier detection holds out at ``now``."""
    n = 0
    for health in healths:
        if health.cells is not None:
            health.pull()
        if now < health.ejected_until:
            n += 1
    return n


class ActiveState:
    """Consecutive active-check results of one endpoint, and the verdict they give."""

    __slots__ = ("failures", "healthy", "healthy_threshold", "successes", "unhealthy_threshold")

    def __init__(
        self, healthy_threshold: int, unhealthy_threshold: int, initially_healthy: bool = True
    ) -> None:
        if healthy_threshold < 1 or unhealthy_threshold < 1:
            raise ValueError("health-check thresholds must be at least 1")
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.healthy = initially_healthy
        self.successes = 0  # consecutive successes (0 after a failure)
        self.failures = 0  # consecutive failures (0 after a success)

    def observe(self, ok: bool) -> bool:
        """Record one probe result; True when ``healthy`` flipped."""
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.healthy and self.successes >= self.healthy_threshold:
                self.healthy = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.healthy and self.failures >= self.unhealthy_threshold:
                self.healthy = False
                return True
        return False

    @property
    def consecutive(self) -> int:
        """The length of the current run of equal results (successes or failures)."""
        return self.successes if self.successes else self.failures

    def __repr__(self) -> str:
        return f"<ActiveState healthy={self.healthy} +{self.successes} -{self.failures}>"


class OutlierDetector:
    """Passive health: ejects endpoints after consecutive 5xx or gateway errors."""

    __slots__ = (
        "_mine",
        "base_ejection_time",
        "consecutive_5xx",
        "consecutive_gateway_errors",
        "ejections_5xx",
        "ejections_gateway",
        "ejections_overflow",
        "interval",
        "max_ejection_percent",
        "max_ejection_time",
    )

    def __init__(
        self,
        consecutive_5xx: int = 5,
        consecutive_gateway_errors: int = 0,
        base_ejection_time: float = 30.0,
        max_ejection_percent: int = 10,
        max_ejection_time: float = 300.0,
        interval: float = 10.0,
    ) -> None:
        self.consecutive_5xx = consecutive_5xx  # threshold; 0 disables
        self.consecutive_gateway_errors = consecutive_gateway_errors  # threshold; 0 disables
        self.base_ejection_time = base_ejection_time
        self.max_ejection_percent = max_ejection_percent
        # Envoy: the cap is max(base, max_ejection_time).
        self.max_ejection_time = max(max_ejection_time, base_ejection_time)
        self.interval = interval  # each interval back in service forgives one ejection
        self.ejections_5xx = 0  # ejections triggered by consecutive 5xx (metrics)
        self.ejections_gateway = 0  # ejections triggered by consecutive gateway errors
        self.ejections_overflow = 0  # ejections refused by max_ejection_percent
        self._mine: list[EndpointHealth] = []  # endpoints this detector ejected

    def on_response(
        self, health: EndpointHealth, status: int, now: float, total: int, ejected: int = -1
    ) -> bool:
        """Count one outcome (``status`` 0 = local failure); True when it ejected.

        ``total`` is the number of endpoints of the backend and ``ejected`` how many of
        them are ejected now (``ejected_count``); -1 counts the ejections this detector
        made that are still in force, which is exact unless backends share addresses or
        the detector was replaced while ejections were running (or, with a shared table,
        other workers ejected some: pass ``ejected`` then).
        """
        shared = health.shared
        if shared is None:
            return self._count(health, status, now, total, ejected)
        cells = health.cells
        assert cells is not None
        row = health.row
        if status < 500 and status != 0:
            # a success only zeroes the counters: no lock, and no store when already zero
            if cells[row + 3] or cells[row + 4]:
                cells[row + 3] = cells[row + 4] = 0.0
            health.consecutive_5xx = health.consecutive_gateway = 0
            return False
        shared.lock(row)
        try:
            health.load()
            done = self._count(health, status, now, total, ejected)
            health.store()
        finally:
            shared.unlock(row)
        return done

    def _count(
        self, health: EndpointHealth, status: int, now: float, total: int, ejected: int
    ) -> bool:
        if status < 500 and status != 0:
            health.consecutive_5xx = 0
            health.consecutive_gateway = 0
            return False
        if now < health.ejected_until:
            return False  # already ejected: a late answer to an earlier request
        health.consecutive_5xx += 1
        if status in GATEWAY_ERRORS:
            health.consecutive_gateway += 1
        else:
            health.consecutive_gateway = 0
        threshold = self.consecutive_5xx
        if threshold and health.consecutive_5xx >= threshold:
            if self._eject(health, now, total, ejected):
                self.ejections_5xx += 1
                return True
            return False
        threshold = self.consecutive_gateway_errors
        if not threshold or health.consecutive_gateway < threshold:
            return False
        if self._eject(health, now, total, ejected):
            self.ejections_gateway += 1
            return True
        return False

    def allowed(self, total: int) -> int:
        """How many of ``total`` endpoints may be ejected at once."""
        percent = self.max_ejection_percent
        if percent <= 0 or total <= 0:
            return 0
        return max(1, total * min(percent, 100) // 100)

    def _eject(self, health: EndpointHealth, now: float, total: int, ejected: int) -> bool:
        in_force = self._in_force(now)  # also prunes the list on every ejection
        if ejected < 0:
            ejected = in_force
        if ejected >= self.allowed(total):
            self.ejections_overflow += 1
            return False
        times = health.times_ejected
        if times and health.released_at and self.interval > 0.0:
            forgiven = int((now - health.released_at) // self.interval)
            times = max(0, times - forgiven)
        times += 1
        health.times_ejected = times
        duration = min(self.base_ejection_time * times, self.max_ejection_time)
        health.ejected_until = now + duration
        health.released_at = now + duration
        health.ejections += 1
        health.consecutive_5xx = 0
        health.consecutive_gateway = 0
        self._mine.append(health)
        return True

    def _in_force(self, now: float) -> int:
        mine = [h for h in self._mine if now < h.ejected_until]
        self._mine = mine
        return len(mine)

    def __repr__(self) -> str:
        return (
            f"<OutlierDetector 5xx={self.consecutive_5xx} gw={self.consecutive_gateway_errors}"
            f" base={self.base_ejection_time} max%={self.max_ejection_percent}>"
        )
