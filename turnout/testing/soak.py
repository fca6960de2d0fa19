"""The judgement of a soak run (``bench/soak.py``), kept apart from its I/O so it is tested.

A soak records three things: failed requests (when, which load kind, and the identity of
the connection it used: the client's local port, or for gRPC the port the worker used
towards the upstream, which the upstream reports back), worker kills (when the victim was
frozen with SIGSTOP, when SIGKILL was sent, and, read from its sockets while it was
frozen, the client ports of its downstream connections and its own ports towards the
upstreams), and resource samples (RSS and open fds per process).

``classify`` allows a failure only when it was in flight on a killed worker: it happened
between the victim's freeze and ``window`` seconds after its kill, on a connection the
victim held at that moment. Anything else is a real failure. ``slope_per_hour`` is an
ordinary least-squares fit; ``resource_trend`` applies it per process after a warm-up,
because a worker that replaces a killed one starts small and would otherwise read as a
falling line. Open fds are judged by their floor instead (the fewest in the first and in
the last quarter of the samples): a reload opens some for a moment (a store connection,
the file watcher's new poller, released when the old one is collected), which makes a
short line steep, while a leak raises the floor.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Failure:
    kind: str  # load kind: h1-keepalive, h1-close, h2, websocket, grpc-stream, reload
    at: float  # monotonic seconds
    port: int | None  # the connection's identity; None when it never got one
    error: str
    upstream: bool = False  # port is the worker's towards the upstream, not the client's


@dataclass(frozen=True)
class Kill:
    pid: int
    frozen_at: float
    killed_at: float
    ports: frozenset[int]  # client ports of the victim's downstream connections
    upstream_ports: frozenset[int] = frozenset()  # its local ports towards the upstreams


@dataclass(frozen=True)
class Sample:
    at: float
    pid: int
    role: str  # "supervisor" or "worker"
    rss: int  # bytes
    fds: int


@dataclass
class Verdict:
    allowed: list[Failure] = field(default_factory=list)
    unallowed: list[Failure] = field(default_factory=list)


def in_flight_on(failure: Failure, kill: Kill, window: float) -> bool:
    """Whether ``failure`` can be put down to ``kill``: same connection, right time."""
    held = kill.upstream_ports if failure.upstream else kill.ports
    if failure.port is None or failure.port not in held:
        return False
    return kill.frozen_at <= failure.at <= kill.killed_at + window


def classify(failures: Iterable[Failure], kills: Sequence[Kill], window: float) -> Verdict:
    verdict = Verdict()
    for failure in failures:
        if any(in_flight_on(failure, kill, window) for kill in kills):
            verdict.allowed.append(failure)
        else:
            verdict.unallowed.append(failure)
    return verdict


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, value)`` points, in value per hour; None when
    fewer than two distinct instants make a line."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600.0


@dataclass(frozen=True)
class Trend:
    """One process's resource line after its warm-up."""

    pid: int
    role: str
    seconds: float  # span of the fitted samples
    rss_start: int
    rss_end: int
    rss_slope: float | None  # bytes per hour
    fds_start: int
    fds_end: int
    fds_slope: float | None  # fds per hour
    fds_floor_start: int  # fewest open in the first quarter of the samples
    fds_floor_end: int  # fewest open in the last quarter


def resource_trend(samples: Iterable[Sample], warmup: float) -> list[Trend]:
    """A trend per process, fitted on its samples taken ``warmup`` seconds or more after
    its first one (its start, as far as the soak can see)."""
    by_pid: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_pid[sample.pid].append(sample)
    trends = []
    for pid, series in by_pid.items():
        series.sort(key=lambda s: s.at)
        kept = [s for s in series if s.at - series[0].at >= warmup]
        if not kept:
            continue
        quarter = max(1, len(kept) // 4)
        trends.append(
            Trend(
                pid=pid,
                role=series[0].role,
                seconds=kept[-1].at - kept[0].at,
                rss_start=kept[0].rss,
                rss_end=kept[-1].rss,
                rss_slope=slope_per_hour([(s.at, s.rss) for s in kept]),
                fds_start=kept[0].fds,
                fds_end=kept[-1].fds,
                fds_slope=slope_per_hour([(s.at, s.fds) for s in kept]),
                fds_floor_start=min(s.fds for s in kept[:quarter]),
                fds_floor_end=min(s.fds for s in kept[-quarter:]),
            )
        )
    return trends


def steep(trend: Trend, min_seconds: float, max_rss_mib_h: float, max_fd_drift: int) -> list[str]:
    """Why ``trend`` fails its thresholds (nothing when it passes, or when it spans less
    than ``min_seconds``: a short line is noise, not a leak)."""
    if trend.seconds < min_seconds:
        return []
    out = []
    if trend.rss_slope is not None and trend.rss_slope / 2**20 > max_rss_mib_h:
        out.append(
            f"{trend.role} {trend.pid}: RSS grows {trend.rss_slope / 2**20:.1f} MiB/h "
            f"(limit {max_rss_mib_h:g})"
        )
    drift = trend.fds_floor_end - trend.fds_floor_start
    if drift > max_fd_drift:
        out.append(
            f"{trend.role} {trend.pid}: open fds floor rose {trend.fds_floor_start} → "
            f"{trend.fds_floor_end} (limit +{max_fd_drift})"
        )
    return out
