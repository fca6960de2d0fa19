"""OTLP/HTTP export of a worker's spans: protobuf batches, one background task.

``TraceExporter.run`` wakes every ``interval`` seconds, takes up to ``batch`` spans
from the worker's ``Tracer`` (more rounds while the queue stays full), encodes them as
one ``ExportTraceServiceRequest`` (the envelope with ``opentelemetry-proto``, the
spans written field by field: ``encode``) and POSTs it to the
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
from struct import pack
from typing import Final

import httpx
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from turnout import __version__
from turnout.core.tasks import spawn
from turnout.observe.tracing import AttributeValue, SpanRecord, Tracer

log = logging.getLogger("turnout.tracing")

MAX_BACKOFF: Final = 30.0
SCOPE: Final = "turnout"


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL: Final = [bytes((i,)) for i in range(0x80)]


def _field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: ``tag`` (field number and wire type 2), length, data."""
    return tag + _varint(len(data)) + data


# Span (opentelemetry/proto/trace/v1/trace.proto) field tags.
_TRACE_ID: Final = b"\x0a\x10"  # 1, bytes, always 16 long
_SPAN_ID: Final = b"\x12\x08"  # 2, bytes, 8
_PARENT_ID: Final = b"\x22\x08"  # 4, bytes, 8
_NAME: Final = b"\x2a"  # 5
_KIND: Final = b"\x30"  # 6, varint
_START: Final = b"\x39"  # 7, fixed64
_END: Final = b"\x41"  # 8, fixed64
_ATTRIBUTE: Final = b"\x4a"  # 9, KeyValue
_STATUS: Final = b"\x7a"  # 15, Status {message = 2, code = 3}
_STATUS_ERROR: Final = b"\x18\x02"
_SPANS: Final = b"\x12"  # ScopeSpans.spans = 2
_keys: dict[str, bytes] = {}  # attribute key -> its encoded KeyValue.key field


_attributes: dict[tuple[str, AttributeValue, type], bytes] = {}  # most values repeat
_ATTRIBUTE_CACHE: Final = 4096
_UNIQUE: Final = frozenset({"turnout.request_id"})  # never repeats: not worth keeping


def _attribute(key: str, value: AttributeValue) -> bytes:
    if key in _UNIQUE:
        return _encode_attribute(key, value)
    # The type is part of the key: True == 1 would otherwise share an entry.
    ck = (key, value, value.__class__)
    done = _attributes.get(ck)
    if done is not None:
        return done
    if len(_attributes) >= _ATTRIBUTE_CACHE:
        _attributes.clear()  # request ids and paths churn it: start over, cheaply
    done = _attributes[ck] = _encode_attribute(key, value)
    return done


def _encode_attribute(key: str, value: AttributeValue) -> bytes:
    prefix = _keys.get(key)
    if prefix is None:
        prefix = _keys[key] = _field(b"\x0a", key.encode())
    if isinstance(value, str):
        any_value = _field(b"\x0a", value.encode())
    elif isinstance(value, bool):
        any_value = b"\x10\x01" if value else b"\x10\x00"
    elif isinstance(value, int):
        any_value = b"\x18" + _varint(value)
    else:
        any_value = b"\x21" + pack("<d", value)
    return _field(_ATTRIBUTE, prefix + _field(b"\x12", any_value))


def _span(rec: SpanRecord) -> bytes:
    parts = [
        _TRACE_ID,
        rec.trace_id.to_bytes(16, "big"),
        _SPAN_ID,
        rec.span_id.to_bytes(8, "big"),
    ]
    if rec.parent_id:
        parts += (_PARENT_ID, rec.parent_id.to_bytes(8, "big"))
    parts += (
        _field(_NAME, rec.name.encode()),
        _KIND,
        _varint(rec.kind),
        _START,
        pack("<Q", rec.start_ns),
        _END,
        pack("<Q", rec.end_ns),
    )
    parts += [_attribute(k, v) for k, v in rec.attributes]
    if rec.error:
        parts.append(_field(_STATUS, _field(b"\x12", rec.error.encode()) + _STATUS_ERROR))
    return _field(_SPANS, b"".join(parts))


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
    spans: Sequence[SpanRecord], service_name: str, parts: tuple[bytes, bytes] | None = None
) -> bytes:
    """One serialised ``ExportTraceServiceRequest`` holding ``spans``.

    Spans are written field by field: building them as protobuf message objects cost
    about 25 times as much per span (docs/benchmarks.md), the largest share of a traced
    request. The encoding is checked by decoding it with opentelemetry-proto in the tests.
    """
    resource, scope = parts if parts is not None else envelope(service_name)
    scope_spans = _field(b"\x0a", scope) + b"".join([_span(rec) for rec in spans])
    resource_spans = _field(b"\x0a", resource) + _field(b"\x12", scope_spans)
    return _field(b"\x0a", resource_spans)


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
        while tracer.spans:
            batch = tracer.take(self.batch)
            if not await self._send(batch):
                return

    async def _send(self, batch: list[SpanRecord]) -> bool:
        client = self._client
        assert client is not None
        body = encode(batch, self.service_name, self.envelope)
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
