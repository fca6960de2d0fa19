"""Per-worker backend state that outlives a snapshot: breakers and outlier detectors.

A reload builds new clusters but must not forget that a backend's breaker is open or
that an endpoint was ejected, so the builder asks ``BackendState`` for the guard and
detector of each backend label and gets the previous ones, reconfigured.
"""

from __future__ import annotations

from collections.abc import Callable

from turnout.config.model.backend import CircuitBreakerSpec, PassiveHealthCheckSpec
from turnout.core.durations import parse_duration
from turnout.observe.stats import WorkerStats
from turnout.proxy.upstream.breaker import STATE_NAMES, BackendGuard, ErrorRateBreaker
from turnout.proxy.upstream.ejections import EjectionTable
from turnout.proxy.upstream.health import OutlierDetector


class BackendState:
    """Per-worker state of each backend that must survive reloads: its ``BackendGuard``
    (concurrency counters, error-rate breaker) and its ``OutlierDetector``."""

    def __init__(self, stats: WorkerStats | None = None) -> None:
        self.stats = stats
        self.guards: dict[str, BackendGuard] = {}
        self.detectors: dict[str, tuple[tuple[float, ...], OutlierDetector]] = {}
        # the host-wide outlier table the workers share (None: ejections per worker)
        self.ejections: EjectionTable | None = None

    def guard(self, label: str, spec: CircuitBreakerSpec | None) -> BackendGuard:
        guard = self.guards.get(label)
        if guard is None:
            guard = self.guards[label] = BackendGuard()
        if spec is None:
            guard.max_connections = guard.max_pending = 1 << 30
            guard.max_requests = guard.max_retries = 1 << 30
            guard.breaker = None
            return guard
        guard.max_connections = spec.max_connections
        guard.max_pending = spec.max_pending_requests
        guard.max_requests = spec.max_parallel_requests
        guard.max_retries = spec.max_parallel_retries
        rate = spec.error_rate
        if rate is None:
            guard.breaker = None
        else:
            settings = (
                rate.threshold,
                rate.minimum_requests,
                parse_duration(rate.window),
                parse_duration(rate.open_duration),
                rate.half_open_requests,
            )
            if guard.breaker is None:
                guard.breaker = ErrorRateBreaker(*settings, on_transition=self._reporter(label))
            else:
                guard.breaker.configure(*settings)
        return guard

    def _reporter(self, label: str) -> Callable[[int], None]:
        stats = self.stats

        def report(state: int) -> None:
            if stats is not None:
                stats.event(label, "breaker:" + STATE_NAMES[state])

        return report

    def detector(self, label: str, spec: PassiveHealthCheckSpec | None) -> OutlierDetector | None:
        if spec is None:
            self.detectors.pop(label, None)
            return None
        settings = (
            float(spec.consecutive_5xx_errors),
            float(spec.consecutive_gateway_errors),
            parse_duration(spec.base_ejection_time),
            float(spec.max_ejection_percent),
            parse_duration(spec.max_ejection_time),
            parse_duration(spec.interval),
        )
        known = self.detectors.get(label)
        if known is not None and known[0] == settings:
            return known[1]
        detector = OutlierDetector(
            consecutive_5xx=spec.consecutive_5xx_errors,
            consecutive_gateway_errors=spec.consecutive_gateway_errors,
            base_ejection_time=settings[2],
            max_ejection_percent=spec.max_ejection_percent,
            max_ejection_time=settings[4],
            interval=settings[5],
        )
        self.detectors[label] = (settings, detector)
        return detector
