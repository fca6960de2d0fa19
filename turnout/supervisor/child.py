"""Entry point of a worker process: ``python -m turnout.supervisor.child FD``.

The worker speaks to its supervisor over the control channel on ``FD`` with the
messages of ``turnout.proxy.messages``: it receives ``InitWorker`` (answered with
``WorkerReady``), ``ApplyConfig`` with the new listening sockets (``Applied``), ``Ping``
(``Pong``), ``HealthVerdicts`` and ``Drain`` (``Drained``), and sends ``StatsReport``
every second.

Pings are answered from the event loop itself, so a worker whose loop is stuck stops
answering and is replaced. If the supervisor disappears (the channel closes), the
worker drains and exits rather than serving unsupervised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Coroutine
from typing import Any

import uvloop

from turnout.config.configset import ConfigSet
from turnout.core.logsetup import configure_logging
from turnout.core.tasks import spawn
from turnout.observe.accesslog import open_access_log
from turnout.proxy.messages import (
    Applied,
    ApplyConfig,
    Drain,
    Drained,
    HealthVerdicts,
    InitWorker,
    Ping,
    Pong,
    PurgeCache,
    StatsReport,
    UnknownMessages,
    WorkerReady,
)
from turnout.proxy.worker import Worker
from turnout.supervisor.channel import ControlChannel

log = logging.getLogger("turnout.worker")


class WorkerMain:
    def __init__(self, sock: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.worker: Worker | None = None
        self.grace = 10.0
        self.draining = False
        self.channel = ControlChannel(sock, self.on_message, self.on_channel_closed)
        self._stats_handle: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.unknown = UnknownMessages(log)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        spawn(coro, loop=self.loop, keep=self.tasks)

    def on_message(self, msg: object, fds: list[int]) -> None:
        match msg:
            case Ping(seq):
                self.channel.send(Pong(seq))
            case ApplyConfig(revision, config, keys):
                sockets = {key: socket.socket(fileno=fd) for key, fd in zip(keys, fds, strict=True)}
                self.spawn(self.apply(revision, config, sockets))
            case InitWorker():
                self.init(msg)
            case HealthVerdicts(verdicts):
                # {endpoint key: healthy} from the supervisor's active health checks
                if self.worker is not None:
                    self.worker.rt.set_active_health(verdicts)
            case PurgeCache(keys, prefixes, tags):
                if self.worker is not None:
                    self.worker.rt.caches.purge(keys, prefixes, tags)
            case Drain(grace):
                self.grace = grace
                self.start_drain()
            case _:
                for fd in fds:
                    os.close(fd)
                self.unknown.ignore(msg)

    def init(self, msg: InitWorker) -> None:
        self.grace = msg.settings.drain_timeout
        self.worker = Worker(
            self.loop,
            msg.settings,
            open_access_log(msg.access_log, msg.access_log_fields, msg.settings.access_log_sample),
            limits_path=msg.limits_path,
            redis_url=msg.redis_url,
            ejections_path=msg.ejections_path,
        )
        self.channel.send(WorkerReady(os.getpid()))
        self._stats_handle = self.loop.call_later(1.0, self.send_stats)

    async def apply(
        self, revision: int, config: ConfigSet, sockets: dict[str, socket.socket]
    ) -> None:
        assert self.worker is not None
        try:
            await self.worker.apply(config, revision, sockets)
        except Exception as exc:
            log.error("worker %d cannot apply revision %d: %s", os.getpid(), revision, exc)
            traceback.print_exc()
            self.channel.send(Applied(revision, f"{type(exc).__name__}: {exc}"))
        else:
            self.channel.send(Applied(revision, None))

    def send_stats(self) -> None:
        if self.worker is not None and not self.channel.closed:
            self.channel.send(StatsReport(self.worker.stats()))
        self._stats_handle = self.loop.call_later(1.0, self.send_stats)

    def reopen_logs(self) -> None:
        """SIGUSR1 (forwarded by the supervisor): reopen the access log file by name."""
        if self.worker is not None and self.worker.rt.access_log is not None:
            self.worker.rt.access_log.reopen()

    def start_drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        self.spawn(self.drain())

    async def drain(self) -> None:
        if self.worker is not None:
            await self.worker.drain(self.grace)
            if not self.channel.closed:
                self.channel.send(StatsReport(self.worker.stats()))
        if not self.channel.closed:
            self.channel.send(Drained())
        if not self.done.done():
            self.done.set_result(None)

    def on_channel_closed(self) -> None:
        if not self.draining:
            self.start_drain()


async def _run(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    main = WorkerMain(sock)
    loop = asyncio.get_running_loop()
    # Ctrl-C reaches the whole process group; the supervisor coordinates shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop.add_signal_handler(signal.SIGTERM, main.start_drain)
    loop.add_signal_handler(signal.SIGUSR1, main.reopen_logs)
    await main.done
    # Give the channel a moment to flush the final messages.
    await asyncio.sleep(0)
    main.channel.close()


def main() -> None:
    configure_logging(os.environ.get("TURNOUT_LOG_LEVEL", "INFO"))
    uvloop.run(_run(int(sys.argv[1])))


if __name__ == "__main__":
    main()
