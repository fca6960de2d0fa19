"""Request tracing records, kept off the request path.

A worker with tracing on has one ``Tracer``. Per request it costs:

* ``begin``: read an incoming ``traceparent`` (or B3) from the received headers, draw a
  span id (``getrandbits``; a trace id too when the request starts a trace) and decide
  sampling, parent-based: a sampled parent is kept, an unsampled one is not, a request
  without one is kept with probability ``ratio``;
* ``RequestTrace.attempt`` per upstream attempt: a new client span id, written into the
  upstream request's ``traceparent`` (every request carries one, sampled or not, so the
  services continue the same trace);
* at the end, ``keep`` says whether the spans are recorded: sampled, or an error (a
  5xx answer or a failed attempt) when ``keep_errors`` (the default). Kept spans are
  plain ``SpanRecord`` objects appended to ``spans``; beyond ``max_queue`` they are
  dropped and counted. ``otlp.TraceExporter`` (one task per worker) takes them in
  batches, so nothing is encoded or sent while a request is served.

With tracing off the runtime holds no tracer and a request pays one attribute check.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import getrandbits, random
from typing import Final

from turnout.observe.tracecontext import (
    Incoming,
    format_traceparent,
    parse_b3_multi,
    parse_b3_single,
    parse_traceparent,
)

SPAN_KIND_SERVER: Final = 2  # opentelemetry.proto.trace.v1.Span.SpanKind
SPAN_KIND_CLIENT: Final = 3

AttributeValue = str | int | float | bool
Attributes = list[tuple[str, AttributeValue]]


@dataclass
class TracingSettings:
    """How a worker traces (``turnout serve --trace-*``); ``endpoint`` "" = off.

    Not frozen: a compiled (mypyc) frozen dataclass cannot be unpickled, and settings
    travel to the workers pickled."""

    endpoint: str = ""  # OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces
    ratio: float = 1.0  # of requests that start a trace (parent-based otherwise)
    keep_errors: bool = True  # record 5xx answers and failed attempts whatever the ratio
    service_name: str = "turnout"
    max_queue: int = 8192  # spans waiting for export in a worker; beyond, dropped
    batch: int = 512  # spans per export request
    interval: float = 1.0  # seconds between exports
    timeout: float = 5.0  # one export request, connect to answer


class SpanRecord:
    """One finished span, as plain values (the exporter encodes it)."""

    def __init__(
        self,
        trace_id: int,
        span_id: int,
        parent_id: int,
        name: str,
        kind: int,
        start_ns: int,
        end_ns: int,
        attributes: Attributes,
        error: str,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id  # 0: a root span
        self.name = name
        self.kind = kind
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.attributes = attributes
        self.error = error  # "" = not an error; else the status message


class ClientAttempt:
    """One upstream attempt of a traced request (a client span once finished)."""

    def __init__(
        self, span_id: int, start: float, endpoint: str, host: str, port: int, resend: int
    ) -> None:
        self.span_id = span_id
        self.start = start  # perf_counter seconds
        self.end = 0.0  # 0: still open
        self.endpoint = endpoint  # the pool's key
        self.host = host  # "" for a unix socket
        self.port = port
        self.resend = resend  # http.request.resend_count: 0 for the first try
        self.status = 0  # what the upstream answered (0: nothing)
        self.error = ""  # why it failed, when it did


class RequestTrace:
    """The trace context of one request: its server span and upstream attempts."""

    def __init__(self, trace_id: int, span_id: int, parent_id: int, sampled: bool) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.attempts: list[ClientAttempt] = []
        self.failed = False  # an attempt failed (kept as an error)

    def attempt(
        self,
        headers: list[tuple[bytes, bytes]],
        endpoint: str,
        host: str,
        port: int,
        now: float,
    ) -> None:
        """An upstream attempt starts: a client span, and its ``traceparent`` upstream."""
        attempts = self.attempts
        if attempts and not attempts[-1].end:
            attempts[-1].end = now  # a free retry on a fresh connection ends the last
        span_id = getrandbits(64) or 1
        attempts.append(ClientAttempt(span_id, now, endpoint, host, port, len(attempts)))
        value = format_traceparent(self.trace_id, span_id, self.sampled)
        for i, (name, _) in enumerate(headers):
            if name == b"traceparent":
                headers[i] = (b"traceparent", value)
                return
        headers.append((b"traceparent", value))

    def attempt_end(self, status: int, error: str, now: float) -> None:
        """The current attempt ended with ``status`` (0 = none) or ``error``."""
        attempts = self.attempts
        if not attempts or attempts[-1].end:
            return
        last = attempts[-1]
        last.end = now
        last.status = status
        last.error = error
        if error or status >= 500:
            self.failed = True


def incoming_context(received: dict[bytes, bytes]) -> Incoming:
    """The context a request continues: ``traceparent``, else B3 (single, then multi)."""
    value = received.get(b"traceparent")
    if value is not None:
        found = parse_traceparent(value.strip())
        if found is not None:
            return found
    value = received.get(b"b3")
    if value is not None:
        return parse_b3_single(value)
    value = received.get(b"x-b3-traceid")
    if value is not None:
        return parse_b3_multi(
            value,
            received.get(b"x-b3-spanid"),
            received.get(b"x-b3-sampled"),
            received.get(b"x-b3-flags"),
        )
    return None


class Tracer:
    """A worker's sampler and span buffer (see the module docstring)."""

    def __init__(self, settings: TracingSettings) -> None:
        self.settings = settings
        self.ratio = settings.ratio
        self.keep_errors = settings.keep_errors
        self.max_queue = settings.max_queue
        self.spans: list[SpanRecord] = []
        self.dropped = 0  # spans not kept: the queue was full, or an export failed
        self.exported = 0
        self.export_failures = 0

    def begin(self, received: dict[bytes, bytes]) -> RequestTrace:
        found = incoming_context(received) if received else None
        span_id = getrandbits(64) or 1
        if found is None:
            return RequestTrace(getrandbits(128) or 1, span_id, 0, random() < self.ratio)
        return RequestTrace(found[0], span_id, found[1], found[2])

    def keep(self, trace: RequestTrace, status: int) -> bool:
        """Whether the request's spans are recorded (sampled, or an error kept)."""
        return trace.sampled or (self.keep_errors and (status >= 500 or trace.failed))

    def add(self, records: list[SpanRecord]) -> None:
        spans = self.spans
        room = self.max_queue - len(spans)
        if room >= len(records):
            spans.extend(records)
            return
        if room > 0:
            spans.extend(records[:room])
        self.dropped += len(records) - max(room, 0)

    def take(self, limit: int) -> list[SpanRecord]:
        spans = self.spans
        if len(spans) <= limit:
            self.spans = []
            return spans
        batch = spans[:limit]
        del spans[:limit]
        return batch
