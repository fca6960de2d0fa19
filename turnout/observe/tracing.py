"""Request tracing records, kept off the request path.

A worker with tracing on has one ``Tracer``. Per request it costs:

* ``begin``: read an incoming ``traceparent`` (or B3) from the received headers, draw a
  span id (``getrandbits``; a trace id too when the request starts a trace) and decide
  sampling, parent-based: a sampled parent is kept, an unsampled one is not, a request
  without one is kept with probability ``ratio``;
* ``RequestTrace.attempt`` per upstream attempt: a new client span id, written into the
  upstream request's ``traceparent`` (every request carries one, sampled or not, so the
  services continue the same trace);
* at the end, ``keep`` says whether the request is recorded: sampled, or an error (a
  5xx answer or a failed attempt) when ``keep_errors`` (the default). A kept request is
  one flat tuple of raw values (``proxy/spans.request_flow``; fields named in
  ``observe.flowrecord``) appended to ``records``; beyond ``max_queue`` spans' worth
  they are dropped and counted. ``otlp.TraceExporter`` (one task per worker) takes them
  in batches and only then builds and encodes the spans, so nothing is formatted or
  encoded while a request is served.

With tracing off the runtime holds no tracer and a request pays one attribute check.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import getrandbits, random
from typing import Any, Final

from turnout.observe.flowrecord import ATTEMPTS
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


class GatewayTracing:
    """A Gateway's own sampling (its ``turnout.dev/trace-*`` annotations), compiled
    once per snapshot onto each of its listeners: ``None`` keeps the serve flag's value.
    Where the spans go (endpoint, service name) stays per process: one exporter per
    worker."""

    __slots__ = ("keep_errors", "ratio")

    def __init__(self, ratio: float | None = None, keep_errors: bool | None = None) -> None:
        self.ratio = ratio
        self.keep_errors = keep_errors


class ClientAttempt:
    """One upstream attempt of a traced request (a client span once finished)."""

    __slots__ = (
        "end",
        "endpoint",
        "error",
        "host",
        "kind",
        "port",
        "resend",
        "span_id",
        "start",
        "status",
    )

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
        self.kind = ""  # "" for an attempt; "mirror" for a RequestMirror's copy


class RequestTrace:
    """The trace context of one request: its server span and upstream attempts."""

    __slots__ = (
        "attempts",
        "carried",
        "failed",
        "filters",
        "header_at",
        "keep_errors",
        "parent_id",
        "release",
        "sampled",
        "span_id",
        "trace_id",
    )

    def __init__(self, trace_id: int, span_id: int, parent_id: int, sampled: bool) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.attempts: list[ClientAttempt] = []
        self.failed = False  # an attempt failed (kept as an error)
        # the filters that acted on the request (their kinds, in order); () = none did
        self.filters: tuple[str, ...] = ()
        self.release = ""  # the release version the request went to ("" = no release)
        self.carried = 0  # CARRIED_* bits: the context headers the request came with
        self.header_at = -1  # where ``attempt`` put the traceparent it added
        self.keep_errors = True  # record it when it fails, sampled or not (``Tracer.keep``)

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
        if self.carried:
            self._rewrite(headers, value, span_id)
            return
        # The common case: no context came in, so the only traceparent is the one added
        # by the previous attempt (filters ran before the first).
        at = self.header_at
        if 0 <= at < len(headers) and headers[at][0] == b"traceparent":
            headers[at] = (b"traceparent", value)
        elif at >= 0:  # the list changed since: find it
            self._rewrite(headers, value, span_id)
        else:
            self.header_at = len(headers)
            headers.append((b"traceparent", value))

    def _rewrite(self, headers: list[tuple[bytes, bytes]], value: bytes, span_id: int) -> None:
        """Name this attempt's span in every context header the request carried: the
        ``traceparent`` (added when the request had B3 only) and B3 in the form it came
        in, so a B3-only service nests under the gateway's span as well."""
        sampled = self.sampled
        b3 = self.carried & (CARRIED_B3 | CARRIED_B3_MULTI)
        trace = span = flag = b""
        if b3:
            trace = (
                b"%016x" % self.trace_id if self.trace_id >> 64 == 0 else b"%032x" % self.trace_id
            )
            span = b"%016x" % span_id
            flag = b"1" if sampled else b"0"
        found = False
        for i, (name, _) in enumerate(headers):
            if name == b"traceparent":
                headers[i] = (name, value)
                found = True
            elif not b3:
                continue
            elif name == b"b3":
                headers[i] = (name, b"%s-%s-%s-%016x" % (trace, span, flag, self.span_id))
            elif name == b"x-b3-traceid":
                headers[i] = (name, trace)
            elif name == b"x-b3-spanid":
                headers[i] = (name, span)
            elif name == b"x-b3-parentspanid":
                headers[i] = (name, b"%016x" % self.span_id)
            elif name == b"x-b3-sampled":
                headers[i] = (name, flag)
        if not found:
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


CARRIED_TRACEPARENT: Final = 1
CARRIED_B3: Final = 2
CARRIED_B3_MULTI: Final = 4


def carried(received: dict[bytes, bytes], valid: bool) -> int:
    """Which context headers a request carries (``RequestTrace.carried``). B3 is only
    rewritten upstream when it was the context the gateway continued (or none was
    valid): next to a valid ``traceparent`` it is left as received."""
    bits = CARRIED_TRACEPARENT if b"traceparent" in received else 0
    if bits and valid and parse_traceparent(received[b"traceparent"].strip()) is not None:
        return bits
    if b"b3" in received:
        bits |= CARRIED_B3
    if b"x-b3-traceid" in received:
        bits |= CARRIED_B3_MULTI
    return bits


class Tracer:
    """A worker's sampler and span buffer (see the module docstring)."""

    def __init__(self, settings: TracingSettings) -> None:
        self.settings = settings
        self.ratio = settings.ratio
        self.keep_errors = settings.keep_errors
        self.max_queue = settings.max_queue
        self.records: list[tuple[Any, ...]] = []  # kept requests (proxy/spans.request_flow)
        self.queued = 0  # spans' worth in ``records``
        self.dropped = 0  # spans not kept: the queue was full, or an export failed
        self.exported = 0
        self.export_failures = 0

    def begin(
        self, received: dict[bytes, bytes], own: GatewayTracing | None = None
    ) -> RequestTrace:
        """A request's trace context; ``own``: its Gateway's sampling, if it has one."""
        found = incoming_context(received) if received else None
        span_id = getrandbits(64) or 1
        ratio = self.ratio
        keep_errors = self.keep_errors
        if own is not None:
            if own.ratio is not None:
                ratio = own.ratio
            if own.keep_errors is not None:
                keep_errors = own.keep_errors
        if found is None:
            trace = RequestTrace(getrandbits(128) or 1, span_id, 0, random() < ratio)
        else:
            trace = RequestTrace(found[0], span_id, found[1], found[2])
        trace.keep_errors = keep_errors
        if received:
            trace.carried = carried(received, found is not None)
        return trace

    def keep(self, trace: RequestTrace, status: int) -> bool:
        """Whether the request's spans are recorded (sampled, or an error kept)."""
        return trace.sampled or (trace.keep_errors and (status >= 500 or trace.failed))

    def add(self, record: tuple[Any, ...], spans: int) -> None:
        """Queue one kept request's record, worth ``spans`` spans (1 + its attempts)."""
        if self.queued + spans > self.max_queue:
            self.dropped += spans
            return
        self.records.append(record)
        self.queued += spans

    def take(self, limit: int) -> list[tuple[Any, ...]]:
        """The oldest queued records, about ``limit`` spans' worth (at least one)."""
        records = self.records
        if self.queued <= limit:
            self.records = []
            self.queued = 0
            return records
        n = 0
        spans = 0
        for record in records:
            spans += 1 + len(record[ATTEMPTS])
            n += 1
            if spans >= limit:
                break
        batch = records[:n]
        del records[:n]
        self.queued -= spans
        return batch
