"""OTLP/HTTP export of a worker's spans: protobuf batches, one background task.

``TraceExporter.run`` wakes every ``interval`` seconds, takes up to ``batch`` spans
from the worker's ``Tracer`` (more rounds while the queue stays full), encodes them as
one ``ExportTraceServiceRequest`` (the envelope with ``opentelemetry-proto``, the
spans written field by field: ``encode``) and POSTs it to the
collector with ``Content-Type: application/x-protobuf``, each request bounded by
``timeout``. The spans are built from the kept requests' records only here
(``observe.spanencode``). A failed export (connection refused, timeout, a non-2xx answer) drops
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
from typing import Any, Final

import httpx
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from turnout import __version__
from turnout.core.tasks import spawn
from turnout.observe.flowrecord import ATTEMPTS
from turnout.observe.protowire import field
from turnout.observe.spanencode import request_spans
from turnout.observe.tracing import Tracer

log = logging.getLogger("turnout.tracing")

MAX_BACKOFF: Final = 30.0
SCOPE: Final = "turnout"


def envelope(service_name: str) -> tuple[bytes, bytes]:
    """The serialised ``Resource`` and ``InstrumentationScope`` of every export, built
    once with the opentelemetry-proto messages."""
    resource = Resource(
        attributes=[
            KeyValue(key="service.name", value=AnyValue(string_value=service_name)),
            KeyValue(key="service.version", value=AnyValue(string_value=__version__)),
            KeyValue(key="telemetry.sdk.name", value=AnyValue(string_value="turnout")),
        ]
    )
    scope = InstrumentationScope(name=SCOPE, version=__version__)
    return resource.SerializeToString(), scope.SerializeToString()


def encode(
    records: Sequence[tuple[Any, ...]],
    service_name: str,
    parts: tuple[bytes, bytes] | None = None,
) -> bytes:
    """One serialised ``ExportTraceServiceRequest`` holding the spans of ``records``
    (kept requests, ``observe.flowrecord``).

    Spans are written field by field (``observe.spanencode``): building them as protobuf
    message objects cost about 25 times as much per span (docs/benchmarks.md). The
    encoding is checked against opentelemetry-proto's own in the tests.
    """
    resource, scope = parts if parts is not None else envelope(service_name)
    spans = [s for rec in records for s in request_spans(rec)]
    scope_spans = field(b"\x0a", scope) + b"".join(spans)
    resource_spans = field(b"\x0a", resource) + field(b"\x12", scope_spans)
    return field(b"\x0a", resource_spans)


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
        self.envelope = envelope(settings.service_name)
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
        while tracer.records:
            batch = tracer.take(self.batch)
            if not await self._send(batch):
                return

    async def _send(self, batch: list[tuple[Any, ...]]) -> bool:
        client = self._client
        assert client is not None
        body = encode(batch, self.service_name, self.envelope)
        spans = sum(1 + len(rec[ATTEMPTS]) for rec in batch)
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
            tracer.exported += spans
            if self.backoff:
                log.info("trace export to %s works again", self.url)
            self.backoff = 0.0
            self._warned = False
            return True
        tracer.export_failures += 1
        tracer.dropped += spans
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
