"""JSON access log, kept off the request path.

A finished request appends one tuple of raw values (bytes and numbers, no formatting)
to ``records``; every ``batch`` records a flush is scheduled with ``call_soon``, and the
runtime's ticker flushes whatever is left once a second. Formatting a batch costs about
1–2 µs a record (strings that are already JSON, such as route labels, are pre-escaped at
snapshot build), far less than ``json.dumps`` per request. The formatted bytes go to a
writer thread, so a slow disk or a full stdout pipe can never block the event loop; if
the writer falls more than ``max_backlog`` bytes behind, lines are dropped and counted.

Fields (``--access-log-fields``): ``time duration_ms method path host status
bytes_sent bytes_received route backend endpoint request_id client user_agent``.
"""

from __future__ import annotations

import asyncio
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _js  # C implementation
from typing import Any, Final

# Record layout (indices into the tuple the stream appends).
R_WALL, R_DURATION, R_METHOD, R_TARGET, R_HOST, R_STATUS = 0, 1, 2, 3, 4, 5
R_SENT, R_RECEIVED, R_ROUTE, R_BACKEND, R_ENDPOINT, R_ID, R_CLIENT, R_UA = (
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
)

Record = tuple[Any, ...]


def _bstr(value: bytes | None) -> str:
    if value is None:
        return "null"
    return _js(value.decode("utf-8", "backslashreplace"))


def _time(wall: float, cache: dict[int, str]) -> str:
    sec = int(wall)
    prefix = cache.get(sec)
    if prefix is None:
        cache.clear()
        prefix = cache[sec] = time.strftime('"%Y-%m-%dT%H:%M:%S', time.gmtime(sec))
    return f'{prefix}.{int((wall - sec) * 1000):03d}Z"'


FIELD_RENDERERS: Final[dict[str, Callable[[Record, dict[int, str]], str]]] = {
    "time": lambda r, c: _time(r[R_WALL], c),
    "duration_ms": lambda r, c: f"{r[R_DURATION] * 1000:.3f}",
    "method": lambda r, c: _bstr(r[R_METHOD]),
    "path": lambda r, c: _bstr(r[R_TARGET]),
    "host": lambda r, c: _bstr(r[R_HOST]),
    "status": lambda r, c: str(r[R_STATUS]),
    "bytes_sent": lambda r, c: str(r[R_SENT]),
    "bytes_received": lambda r, c: str(r[R_RECEIVED]),
    "route": lambda r, c: r[R_ROUTE],  # pre-escaped JSON string
    "backend": lambda r, c: r[R_BACKEND],  # pre-escaped JSON string
    "endpoint": lambda r, c: _js(r[R_ENDPOINT]) if r[R_ENDPOINT] else "null",
    "request_id": lambda r, c: _bstr(r[R_ID]),
    "client": lambda r, c: r[R_CLIENT],  # pre-escaped per connection
    "user_agent": lambda r, c: _bstr(r[R_UA]),
}
DEFAULT_FIELDS: Final = (
    "time",
    "client",
    "method",
    "host",
    "path",
    "status",
    "bytes_sent",
    "duration_ms",
    "route",
    "backend",
    "endpoint",
    "request_id",
)


class LogWriter:
    """Writes byte batches to a file descriptor from a daemon thread."""

    def __init__(self, fd: int, max_backlog: int = 64 << 20) -> None:
        self._fd = fd
        # Several workers share stdout: a pipe write is atomic only up to PIPE_BUF, so
        # for pipes and terminals each write holds whole lines and at most that much.
        mode = os.fstat(fd).st_mode
        self._atomic = 4096 if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) else 0
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._backlog = 0
        self._max_backlog = max_backlog
        self._lock = threading.Lock()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="turnout-access-log", daemon=True)
        self._thread.start()

    def write(self, data: bytes, lines: int) -> None:
        with self._lock:
            if self._backlog + len(data) > self._max_backlog:
                self.dropped += lines
                return
            self._backlog += len(data)
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            try:
                for piece in self._pieces(data):
                    view = memoryview(piece)
                    while view:
                        n = os.write(self._fd, view)
                        view = view[n:]
            except OSError:
                pass  # a closed stdout must not kill the worker
            with self._lock:
                self._backlog -= len(data)

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


class AccessLog:
    def __init__(
        self,
        writer: LogWriter,
        fields: tuple[str, ...] = DEFAULT_FIELDS,
        batch: int = 256,
    ) -> None:
        unknown = [f for f in fields if f not in FIELD_RENDERERS]
        if unknown:
            raise ValueError(f"unknown access log field(s): {', '.join(unknown)}")
        self.fields = fields
        self.wants_user_agent = "user_agent" in fields
        self._renderers = [(f'"{name}":', FIELD_RENDERERS[name]) for name in fields]
        self._writer = writer
        self._batch = batch
        self._time_cache: dict[int, str] = {}
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.records: list[Record] = []

    def record(self, rec: Record) -> None:
        records = self.records
        records.append(rec)
        if len(records) >= self._batch and not self._scheduled:
            self._scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        records = self.records
        if not records:
            return
        self.records = []
        cache = self._time_cache
        renderers = self._renderers
        lines = [
            "{" + ",".join([key + render(rec, cache) for key, render in renderers]) + "}\n"
            for rec in records
        ]
        self._writer.write("".join(lines).encode(), len(lines))

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def close(self) -> None:
        self.flush()
        self._writer.close()


def open_access_log(target: str, fields: tuple[str, ...] = DEFAULT_FIELDS) -> AccessLog | None:
    """``-`` is stdout, ``off`` disables, anything else is a file path (appended)."""
    if target == "off":
        return None
    if target == "-":
        fd = os.dup(sys.stdout.fileno())
    else:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return AccessLog(LogWriter(fd), fields)
