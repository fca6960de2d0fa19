"""JSON access log, kept off the request path.

A finished request appends one tuple of raw values (bytes and numbers, no formatting)
to ``records``. Every ``batch`` records a flush is scheduled with ``call_soon`` (after
the current socket event, so no request waits for it), and the runtime's ticker flushes
whatever is left once a second. Small batches keep each flush short (tens of µs), so
formatting never shows up in tail latency. Strings that are already JSON (route and
backend labels, the client address) are escaped once, at snapshot build or connection
set-up; the rest go through the C JSON string encoder. Lines go to a ``LogWriter``.

Fields (``--access-log-fields``): ``time duration_ms method path host status
bytes_sent bytes_received route backend endpoint request_id client user_agent
routing_key consumer trace_id span_id``; the last two are the request's server span
when tracing is on (``null`` otherwise), and ``turnout serve`` adds them to the default
fields then.

Sampling (``--access-log-sample RATE``): a request answered below 400 is logged with
probability RATE (``sampled()``, one ``random()`` call; none at 1.0); 4xx and 5xx are
always logged. ``reopen()`` (a worker's SIGUSR1, forwarded by the supervisor) opens the
file again by name, so logrotate can move it away without ``copytruncate``.
"""

from __future__ import annotations

import asyncio
import os
import random
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
R_ROUTE: Final = 8  # bytes, already JSON (b"null" when none)
R_BACKEND: Final = 9  # bytes, already JSON
R_ENDPOINT: Final = 10  # bytes, already JSON
R_ID: Final = 11  # bytes | None
R_CLIENT: Final = 12  # bytes, already JSON
R_UA: Final = 13  # bytes | None
R_KEY: Final = 14  # bytes, the sandbox routing key in force (b"" when none)
R_CONSUMER: Final = 15  # str | None, the authenticated Consumer
R_TRACE: Final = 16  # int, the trace id (0: not traced)
R_SPAN: Final = 17  # int, the server span id (0: not traced)

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
    "routing_key",
    "consumer",
    "trace_id",
    "span_id",
)
# Field code -> record index, for fields the record already holds as JSON.
_PRE_ESCAPED: Final = {8: R_ROUTE, 9: R_BACKEND, 10: R_ENDPOINT, 12: R_CLIENT}
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
    "routing_key",
    "consumer",
)


class LineSink(Protocol):
    """What formatted batches go to (``LogWriter``)."""

    dropped: int

    def write(self, data: bytes, lines: int) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def reopen(self) -> None: ...


def json_string(value: str) -> bytes:
    """A JSON string literal, as bytes (for labels escaped once, ahead of time)."""
    escaped: str = encode_basestring_ascii(value)
    return escaped.encode()


def json_bytes(value: bytes | None) -> bytes:
    """A JSON string for raw bytes (invalid UTF-8 shows as ``\\\\xNN``), or ``null``.

    Request targets, hosts and ids are printable ASCII without quotes or backslashes
    almost always (llhttp and the Host check see to most of it), so they are quoted as
    they are; anything else goes through the C JSON encoder.
    """
    if value is None:
        return b"null"
    if _plain(value):
        return b'"' + value + b'"'
    return json_string(value.decode("utf-8", "backslashreplace"))


def _plain(value: bytes) -> bool:
    # Printable ASCII (0x20-0x7e) without '"' (34) and '\\' (92) needs no escaping.
    return 34 not in value and 92 not in value and value.translate(None, _PRINTABLE) == b""


_PRINTABLE: Final = bytes(range(0x20, 0x7F))


class AccessLog:
    def __init__(
        self,
        writer: LineSink,
        fields: tuple[str, ...] = DEFAULT_FIELDS,
        batch: int = 32,
        sample: float = 1.0,
        rand: Any = random.random,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"access log sample rate {sample} is not between 0 and 1")
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"unknown access log field(s): {', '.join(unknown)}")
        self.fields = fields
        self.wants_user_agent = "user_agent" in fields
        self._codes = [FIELDS.index(f) for f in fields]
        self._keys = [f'"{f}":'.encode() for f in fields]
        self._writer = writer
        self._batch = batch
        self._second = -1
        self._second_text = b""
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.records: list[Record] = []
        # formatted lines kept for the supervisor's log ring (``turnout logs``), handed
        # over with the stats once a second; at most ``recent_max`` between two hand-overs
        self.recent: list[bytes] = []
        self.recent_max = 1000
        self.recent_dropped = 0
        self.keep_all = sample >= 1.0  # the common case skips the draw
        self._sample = sample
        self._rand = rand

    def sampled(self) -> bool:
        """Whether a successful request goes in the log (errors always do)."""
        return self.keep_all or self._rand() < self._sample

    def reopen(self) -> None:
        """Write what is pending, then continue in a file opened again by its name."""
        self.flush()
        self._writer.reopen()

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
        self._writer.write(b"".join(lines), len(lines))
        room = self.recent_max - len(self.recent)
        if room >= len(lines):
            self.recent.extend(lines)
        else:
            self.recent.extend(lines[: max(room, 0)])
            self.recent_dropped += len(lines) - max(room, 0)

    def take_recent(self) -> list[bytes]:
        """The lines formatted since the last call (for the supervisor's log ring)."""
        recent, self.recent = self.recent, []
        return recent

    def format(self, rec: Record) -> bytes:
        """One JSON object and a newline."""
        keys = self._keys
        parts: list[bytes] = []
        for i, code in enumerate(self._codes):
            parts.append(keys[i] + self._field(code, rec))
        return b"{" + b",".join(parts) + b"}\n"

    def _field(self, code: int, rec: Record) -> bytes:
        if code == 0:
            return self._time(rec[R_WALL])
        if code == 1:
            micros = int(rec[R_DURATION] * 1_000_000)
            return b"%d.%03d" % (micros // 1000, micros % 1000)
        if code == 2:
            return json_bytes(rec[R_METHOD])
        if code == 3:
            return json_bytes(rec[R_TARGET])
        if code == 4:
            return json_bytes(rec[R_HOST])
        if code == 5:
            return b"%d" % rec[R_STATUS]
        if code == 6:
            return b"%d" % rec[R_SENT]
        if code == 7:
            return b"%d" % rec[R_RECEIVED]
        if code == 11:
            return json_bytes(rec[R_ID])
        if code == 13:
            return json_bytes(rec[R_UA])
        if code == 14:
            return json_bytes(rec[R_KEY] or None)
        if code == 15:
            consumer = rec[R_CONSUMER]
            return b"null" if consumer is None else json_string(consumer)
        if code == 16:
            trace_id: int = rec[R_TRACE]
            return b'"%032x"' % trace_id if trace_id else b"null"
        if code == 17:
            span_id: int = rec[R_SPAN]
            return b'"%016x"' % span_id if span_id else b"null"
        value: bytes = rec[_PRE_ESCAPED[code]]  # route, backend, endpoint, client
        return value

    def _time(self, wall: float) -> bytes:
        sec = int(wall)
        if sec != self._second:
            self._second = sec
            self._second_text = time.strftime('"%Y-%m-%dT%H:%M:%S', time.gmtime(sec)).encode()
        return b'%s.%03dZ"' % (self._second_text, int((wall - sec) * 1000))

    def tick(self) -> None:
        """Once a second: format what is waiting and push buffered lines out."""
        self.flush()
        self._writer.flush()

    def close(self) -> None:
        self.flush()
        self._writer.close()


def open_access_log(
    target: str, fields: tuple[str, ...] = DEFAULT_FIELDS, sample: float = 1.0
) -> AccessLog | None:
    """``-`` is stdout, ``off`` disables, anything else is a file path (appended)."""
    if target == "off":
        return None
    if target == "-":
        writer = LogWriter(os.dup(sys.stdout.fileno()))
    else:
        writer = LogWriter(open_log_file(target), path=target)
    return AccessLog(writer, fields, sample=sample)


def open_log_file(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
