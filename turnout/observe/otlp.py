"""OTLP/HTTP export of a worker's spans: protobuf batches, one background task.

``TraceExporter.run`` wakes every ``interval`` seconds, takes up to ``batch`` spans
from the worker's ``Tracer`` (more rounds while the queue stays full), encodes them as
one ``ExportTraceServiceRequest`` (``opentelemetry-proto``) and POSTs it to the
collector with ``Content-Type: application/x-protobuf``, each request bounded by
``timeout``. A failed export (connection refused, timeout, a non-2xx answer) drops
that batch, counts it, and backs off: the next attempt waits twice as long, up to
``MAX_BACKOFF``; the first success resets it. Meanwhile the tracer's bounded queue
fills and then drops and counts, so a collector that is down never holds memory or
slows requests. Retryable answers are not retried, unlike the SDK's exporter: the
batch that follows carries newer spans, which are worth more than a resent old one.

Encoding runs here, on the worker's loop between requests, never inside one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from turnout import __version__
from turnout.core.tasks import spawn
from turnout.observe.tracing import AttributeValue, SpanRecord, Tracer

log = logging.getLogger("turnout.tracing")

MAX_BACKOFF: Final = 30.0
SCOPE: Final = "turnout"


def _value(value: AttributeValue) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def _span(rec: SpanRecord) -> Span:
    span = Span(
        trace_id=rec.trace_id.to_bytes(16, "big"),
        span_id=rec.span_id.to_bytes(8, "big"),
        name=rec.name,
        kind=rec.kind,  # type: ignore[arg-type]
        start_time_unix_nano=rec.start_ns,
        end_time_unix_nano=rec.end_ns,
        attributes=[KeyValue(key=k, value=_value(v)) for k, v in rec.attributes],
    )
    if rec.parent_id:
        span.parent_span_id = rec.parent_id.to_bytes(8, "big")
    if rec.error:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=rec.error))
    return span


def encode(spans: Sequence[SpanRecord], service_name: str) -> bytes:
    """One ``ExportTraceServiceRequest`` holding ``spans``, serialised."""
    resource = Resource(
        attributes=[
            KeyValue(key="service.name", value=AnyValue(string_value=service_name)),
            KeyValue(key="service.version", value=AnyValue(string_value=__version__)),
            KeyValue(key="telemetry.sdk.name", value=AnyValue(string_value="turnout")),
        ]
    )
    scope = ScopeSpans(
        scope=InstrumentationScope(name=SCOPE, version=__version__),
        spans=[_span(rec) for rec in spans],
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[scope])]
    )
    data: bytes = request.SerializeToString()
    return data


class TraceExporter:
    """The worker's one export task (see the module docstring)."""

    def __init__(self, tracer: Tracer, loop: asyncio.AbstractEventLoop) -> None:
        self.tracer = tracer
        self.loop = loop
        settings = tracer.settings
        self.url = settings.endpoint
        self.interval = settings.interval
        self.batch = settings.batch
        self.timeout = settings.timeout
        self.service_name = settings.service_name
        self.backoff = 0.0
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._warned = False

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout, trust_env=False)
        self._task = spawn(self.run(), loop=self.loop, name="trace-export")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval + self.backoff)
            await self.export_queued()

    async def export_queued(self) -> None:
        """Send what is queued, batch by batch, until the queue is empty or a send fails."""
        tracer = self.tracer
        while tracer.spans:
            batch = tracer.take(self.batch)
            if not await self._send(batch):
                return

    async def _send(self, batch: list[SpanRecord]) -> bool:
        client = self._client
        assert client is not None
        body = encode(batch, self.service_name)
        try:
            async with asyncio.timeout(self.timeout):
                answer = await client.post(
                    self.url,
                    content=body,
                    headers={"content-type": "application/x-protobuf"},
                )
            ok = 200 <= answer.status_code < 300
            problem = f"HTTP {answer.status_code}"
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            ok = False
            problem = type(exc).__name__
        tracer = self.tracer
        if ok:
            tracer.exported += len(batch)
            if self.backoff:
                log.info("trace export to %s works again", self.url)
            self.backoff = 0.0
            self._warned = False
            return True
        tracer.export_failures += 1
        tracer.dropped += len(batch)
        self.backoff = min(MAX_BACKOFF, self.backoff * 2 or self.interval)
        if not self._warned:  # once per outage, not once per batch
            self._warned = True
            log.warning(
                "trace export to %s failed (%s); dropping spans, retrying in %.0fs",
                self.url,
                problem,
                self.backoff,
            )
        return False

    async def close(self, grace: float = 1.0) -> None:
        """Stop the task; send what is queued, within ``grace`` seconds."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._client is None:
            return
        try:
            async with asyncio.timeout(grace):
                await self.export_queued()
        except TimeoutError:
            pass
        await self._client.aclose()
        self._client = None
