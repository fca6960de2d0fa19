"""Where formatted access-log lines go: a file written in place, or a pipe via a thread.

Appending to a regular file lands in the page cache in microseconds, so lines for a
file are written straight from the event loop, gathered into 64 KiB writes (and at
least once a second, from ``flush``) like nginx's ``buffer=64k flush=1s``: few
syscalls, no thread hand-off on the same core. Pipes and terminals (``--access-log -``) can
block when their reader is slow, so batches for them go to a daemon thread; if it
falls more than ``max_backlog`` bytes behind, lines are dropped and counted rather
than let memory grow. Several workers share stdout, and a pipe write is atomic only up
to PIPE_BUF, so writes to pipes hold whole lines and at most 4 KiB.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
from typing import Final

_FILE_BUFFER: Final = 64 * 1024


class LogWriter:
    def __init__(self, fd: int, max_backlog: int = 64 << 20, path: str = "") -> None:
        self._fd = fd
        self._path = path  # a file's name, for ``reopen`` ("" for stdout and pipes)
        mode = os.fstat(fd).st_mode
        self._regular = stat.S_ISREG(mode)
        self._atomic = 4096 if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) else 0
        self._backlog = 0
        self._max_backlog = max_backlog
        self._lock = threading.Lock()
        self.dropped = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if not self._regular:
            self._thread = threading.Thread(
                target=self._run, name="turnout-access-log", daemon=True
            )
            self._thread.start()

    def write(self, data: bytes, lines: int) -> None:
        if self._regular:
            self._buffer.append(data)
            self._buffered += len(data)
            if self._buffered >= _FILE_BUFFER:
                self.flush()
            return
        with self._lock:
            if self._backlog + len(data) > self._max_backlog:
                self.dropped += lines
                return
            self._backlog += len(data)
        self._queue.put(data)

    def flush(self) -> None:
        """Write what is buffered for a file (called by the once-a-second ticker)."""
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer = []
            self._buffered = 0
            self._write_all(data)

    def reopen(self) -> None:
        """Continue in a file opened again by name (after logrotate moved the old one).
        A failure keeps the old file: losing lines is worse than writing them there."""
        if not self._path or not self._regular:
            return
        self.flush()
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return
        old, self._fd = self._fd, fd
        os.close(old)

    def close(self) -> None:
        self.flush()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            self._write_all(data)
            with self._lock:
                self._backlog -= len(data)

    def _write_all(self, data: bytes) -> None:
        try:
            for piece in self._pieces(data):
                view = memoryview(piece)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
        except OSError:
            pass  # a closed stdout or a full disk must not kill the worker

    def _pieces(self, data: bytes) -> list[bytes]:
        limit = self._atomic
        if not limit or len(data) <= limit:
            return [data]
        out: list[bytes] = []
        start = 0
        while start < len(data):
            end = data.rfind(b"\n", start, start + limit) + 1
            if end <= start:  # one line longer than the limit: write it alone
                end = data.find(b"\n", start) + 1 or len(data)
            out.append(data[start:end])
            start = end
        return out
