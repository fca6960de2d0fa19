"""JSON access log, kept off the request path.

A finished request appends one tuple of raw values (bytes and numbers, no formatting)
to ``records``. Every ``batch`` records a flush is scheduled with ``call_soon`` (after
the current socket event, so no request waits for it), and the runtime's ticker flushes
whatever is left once a second. Small batches keep each flush short (tens of µs), so
formatting never shows up in tail latency. Strings that are already JSON (route and
backend labels, the client address) are escaped once, at snapshot build or connection
set-up; the rest go through the C JSON string encoder. Lines go to a ``LogWriter``.

Fields (``--access-log-fields``): ``time duration_ms method path host status
bytes_sent bytes_received route backend endpoint request_id client user_agent``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from json.encoder import encode_basestring_ascii
from typing import Any, Final, Protocol

from turnout.observe.logwriter import LogWriter

# Record layout: indices into the tuple the stream appends.
R_WALL: Final = 0  # float, seconds since the epoch at request start
R_DURATION: Final = 1  # float, seconds
R_METHOD: Final = 2  # bytes | None
R_TARGET: Final = 3  # bytes | None
R_HOST: Final = 4  # bytes | None
R_STATUS: Final = 5  # int
R_SENT: Final = 6  # int
R_RECEIVED: Final = 7  # int
R_ROUTE: Final = 8  # str, already JSON
R_BACKEND: Final = 9  # str, already JSON
R_ENDPOINT: Final = 10  # str, "" or None when none
R_ID: Final = 11  # bytes | None
R_CLIENT: Final = 12  # str, already JSON
R_UA: Final = 13  # bytes | None

Record = tuple[Any, ...]

FIELDS: Final = (
    "time",
    "duration_ms",
    "method",
    "path",
    "host",
    "status",
    "bytes_sent",
    "bytes_received",
    "route",
    "backend",
    "endpoint",
    "request_id",
    "client",
    "user_agent",
)
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


class LineSink(Protocol):
    """What formatted batches go to (``LogWriter``)."""

    dropped: int

    def write(self, data: bytes, lines: int) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def json_bytes(value: bytes | None) -> str:
    """A JSON string for raw bytes (invalid UTF-8 shows as ``\\\\xNN``), or ``null``."""
    if value is None:
        return "null"
    text: str = encode_basestring_ascii(value.decode("utf-8", "backslashreplace"))
    return text


class AccessLog:
    def __init__(
        self,
        writer: LineSink,
        fields: tuple[str, ...] = DEFAULT_FIELDS,
        batch: int = 32,
    ) -> None:
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"unknown access log field(s): {', '.join(unknown)}")
        self.fields = fields
        self.wants_user_agent = "user_agent" in fields
        self._codes = [FIELDS.index(f) for f in fields]
        self._keys = [f'"{f}":' for f in fields]
        self._writer = writer
        self._batch = batch
        self._second = -1
        self._second_text = ""
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.records: list[Record] = []

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def record(self, rec: Record) -> None:
        records = self.records
        records.append(rec)
        if len(records) >= self._batch and not self._scheduled:
            loop = self._loop
            if loop is None:
                try:
                    loop = self._loop = asyncio.get_running_loop()
                except RuntimeError:  # no event loop (tools, tests): write at once
                    self.flush()
                    return
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        records = self.records
        if not records:
            return
        self.records = []
        lines = [self.format(rec) for rec in records]
        self._writer.write("".join(lines).encode(), len(lines))

    def format(self, rec: Record) -> str:
        keys = self._keys
        parts: list[str] = []
        for i, code in enumerate(self._codes):
            parts.append(keys[i] + self._field(code, rec))
        return "{" + ",".join(parts) + "}\n"

    def _field(self, code: int, rec: Record) -> str:
        if code == 0:
            return self._time(rec[R_WALL])
        if code == 1:
            return f"{rec[R_DURATION] * 1000:.3f}"
        if code == 2:
            return json_bytes(rec[R_METHOD])
        if code == 3:
            return json_bytes(rec[R_TARGET])
        if code == 4:
            return json_bytes(rec[R_HOST])
        if code == 5:
            return str(rec[R_STATUS])
        if code == 6:
            return str(rec[R_SENT])
        if code == 7:
            return str(rec[R_RECEIVED])
        if code == 8:
            return str(rec[R_ROUTE])
        if code == 9:
            return str(rec[R_BACKEND])
        if code == 10:
            endpoint: str | None = rec[R_ENDPOINT]
            return encode_basestring_ascii(endpoint) if endpoint else "null"
        if code == 11:
            return json_bytes(rec[R_ID])
        if code == 12:
            return str(rec[R_CLIENT])
        return json_bytes(rec[R_UA])

    def _time(self, wall: float) -> str:
        sec = int(wall)
        if sec != self._second:
            self._second = sec
            self._second_text = time.strftime('"%Y-%m-%dT%H:%M:%S', time.gmtime(sec))
        return f'{self._second_text}.{int((wall - sec) * 1000):03d}Z"'

    def tick(self) -> None:
        """Once a second: format what is waiting and push buffered lines out."""
        self.flush()
        self._writer.flush()

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
