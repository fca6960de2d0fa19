"""Worker processes as seen from the supervisor: spawn, talk, watch, replace.

Each worker is a separate interpreter (``python -m turnout.supervisor.child``) started
with one end of a socketpair; spawning instead of forking keeps the supervisor's threads
(file watcher, admin server) and event loop out of the children.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from turnout.proxy.messages import (
    Applied,
    Drained,
    InitWorker,
    Ping,
    Pong,
    StatsReport,
    ToSupervisor,
    ToWorker,
    UnknownMessages,
    WorkerReady,
)
from turnout.supervisor.channel import ChannelClosed, ControlChannel

log = logging.getLogger("turnout.supervisor")


class WorkerProcess:
    def __init__(
        self, index: int, on_message: Callable[[WorkerProcess, ToSupervisor], None]
    ) -> None:
        self.index = index
        self._on_message = on_message
        self.proc: asyncio.subprocess.Process | None = None
        self.channel: ControlChannel | None = None
        self.pid = 0
        self.ready = False
        self.revision = 0  # revision the worker has applied
        self.apply_error: str | None = None
        self.stats: dict[str, Any] = {}
        self.last_pong = 0.0
        self.ping_seq = 0
        self.drained = False
        self.unknown = UnknownMessages(log)

    async def start(self, init: InitWorker) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "turnout.supervisor.child",
                str(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        self.pid = self.proc.pid
        self.last_pong = asyncio.get_running_loop().time()
        self.channel = ControlChannel(parent, self._received, self._channel_closed)
        self.channel.send(init)

    def send(self, message: ToWorker, fds: list[int] | None = None) -> bool:
        if self.channel is None or self.channel.closed:
            return False
        try:
            self.channel.send(message, fds)
        except ChannelClosed:
            return False
        return True

    def ping(self) -> None:
        self.ping_seq += 1
        self.send(Ping(self.ping_seq))

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self.channel is not None:
            self.channel.close()
        return code

    def _received(self, message: object, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        match message:
            case Pong():
                self.last_pong = asyncio.get_running_loop().time()
            case StatsReport(stats):
                self.stats = stats
            case WorkerReady():
                self.ready = True
            case Applied(revision, None):
                self.revision = revision
                self.apply_error = None
            case Applied(_, error):
                self.apply_error = error
            case Drained():
                self.drained = True
            case _:
                self.unknown.ignore(message)
                return
        self._on_message(self, message)

    def _channel_closed(self) -> None:
        pass
