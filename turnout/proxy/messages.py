"""The messages supervisor and workers exchange over the control channel.

One frozen dataclass per message, so both ends agree on the fields by name and type
(mypy checks senders; receivers ``match`` on the class). They travel as pickles (both
ends are the same program, see ``supervisor/channel.py``); listening sockets ride beside
``ApplyConfig`` as descriptors, in the order of its ``socket_keys``.

This module lives in the data plane because the worker side needs it and the data plane
may not import the supervisor; the supervisor imports it from here. A receiver that gets
a message it does not know (a newer or older peer, a bug) logs it once and ignores it:
``UnknownMessages``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from turnout.config.configset import ConfigSet
    from turnout.proxy.runtime import ProxySettings

# -- supervisor → worker ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitWorker:
    """First message to a new worker: how to run (answered with ``WorkerReady``)."""

    settings: ProxySettings
    access_log: str  # target: "-", a path, or "" for none
    access_log_fields: tuple[str, ...]
    index: int  # the worker's slot, 0 … workers-1
    limits_path: str  # the host-wide rate-limit table ("" = private to the worker)
    redis_url: str  # for Global rate limits ("" = none)
    ejections_path: str = ""  # the host-wide outlier table ("" = ejections per worker)


@dataclass(frozen=True, slots=True)
class ApplyConfig:
    """A revision to build and serve (answered with ``Applied``). The descriptors of the
    listening sockets not sent before come with it, one per key, in order."""

    revision: int
    config: ConfigSet
    socket_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness probe, answered from the worker's event loop with ``Pong``."""

    seq: int


@dataclass(frozen=True, slots=True)
class HealthVerdicts:
    """Active health-check verdicts by endpoint key (changes, or the whole map)."""

    verdicts: dict[str, bool]


@dataclass(frozen=True, slots=True)
class Drain:
    """Stop accepting, finish in-flight requests within ``grace`` seconds, then exit."""

    grace: float


@dataclass(frozen=True, slots=True)
class PurgeCache:
    """Drop stored responses from the worker's memory caches (``turnout cache purge``):
    keys named exactly, keys starting with a prefix, keys tagged."""

    keys: tuple[bytes, ...]
    prefixes: tuple[bytes, ...]
    tags: tuple[bytes, ...]


# -- worker → supervisor ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerReady:
    pid: int


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of an ``ApplyConfig``: ``error`` is None when the revision serves."""

    revision: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Pong:
    seq: int


@dataclass(frozen=True, slots=True)
class StatsReport:
    """The worker's counters (``Worker.stats()``), sent every second and when drained."""

    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Drained:
    """The worker finished draining and is about to exit."""


ToWorker = InitWorker | ApplyConfig | Ping | HealthVerdicts | Drain | PurgeCache
ToSupervisor = WorkerReady | Applied | Pong | StatsReport | Drained
Message = ToWorker | ToSupervisor

TO_WORKER: tuple[type, ...] = (InitWorker, ApplyConfig, Ping, HealthVerdicts, Drain)
TO_SUPERVISOR: tuple[type, ...] = (WorkerReady, Applied, Pong, StatsReport, Drained)


class UnknownMessages:
    """Logs each kind of unexpected message once (a peer of another version would
    otherwise log it every second), then lets the receiver ignore it."""

    __slots__ = ("_log", "_seen")

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._seen: set[str] = set()

    def ignore(self, message: object) -> None:
        kind = type(message).__qualname__
        if kind in self._seen:
            return
        self._seen.add(kind)
        self._log.warning("ignoring an unexpected control message: %.200r", message)
