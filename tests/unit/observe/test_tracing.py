"""The tracer's sampling, the bounded span queue, the upstream ``traceparent`` per
attempt, and the OTLP encoding (decoded back with opentelemetry-proto)."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from turnout.observe.otlp import encode
from turnout.observe.tracing import (
    SPAN_KIND_SERVER,
    SpanRecord,
    Tracer,
    TracingSettings,
)

ON = "http://127.0.0.1:4318/v1/traces"
SAMPLED = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNSAMPLED = SAMPLED[:-2] + b"00"


def tracer(**kw: object) -> Tracer:
    return Tracer(TracingSettings(endpoint=ON, **kw))  # type: ignore[arg-type]


def record(n: int = 1) -> SpanRecord:
    return SpanRecord(1, n, 0, "GET", SPAN_KIND_SERVER, 10, 20, [], "")


def test_the_ratio_decides_for_new_traces_and_the_parent_for_continued_ones() -> None:
    never, always = tracer(ratio=0.0), tracer(ratio=1.0)
    assert not never.begin({}).sampled
    assert always.begin({}).sampled
    assert never.begin({b"traceparent": SAMPLED}).sampled
    assert not always.begin({b"traceparent": UNSAMPLED}).sampled


def test_errors_are_kept_unless_told_not_to() -> None:
    keep, drop = tracer(ratio=0.0), tracer(ratio=0.0, keep_errors=False)
    trace = keep.begin({})
    assert not keep.keep(trace, 200)
    assert keep.keep(trace, 503)
    assert not drop.keep(trace, 503)
    trace.attempt([], "127.0.0.1:1", "127.0.0.1", 1, 1.0)
    trace.attempt_end(0, "connect failed", 2.0)
    assert keep.keep(trace, 200)  # a failed attempt, even when a retry then succeeded


def test_each_attempt_gets_its_own_span_in_the_upstream_traceparent() -> None:
    t = tracer()
    trace = t.begin({b"traceparent": SAMPLED})
    headers = [(b"host", b"shop"), (b"traceparent", SAMPLED)]
    trace.attempt(headers, "127.0.0.1:1", "127.0.0.1", 1, 1.0)
    first = trace.attempts[0]
    assert headers[1] == (b"traceparent", b"00-%032x-%016x-01" % (trace.trace_id, first.span_id))
    trace.attempt_end(500, "", 2.0)
    trace.attempt(headers, "127.0.0.1:2", "127.0.0.1", 2, 3.0)
    second = trace.attempts[1]
    assert len(headers) == 2 and second.span_id != first.span_id
    assert headers[1][1].split(b"-")[2] == b"%016x" % second.span_id
    assert (first.end, first.status, second.resend) == (2.0, 500, 1)
    assert trace.failed


def test_a_request_without_traceparent_gets_one_appended() -> None:
    trace = tracer(ratio=0.0).begin({})
    headers: list[tuple[bytes, bytes]] = []
    trace.attempt(headers, "unix:/s", "", 0, 1.0)
    assert headers[0][0] == b"traceparent" and headers[0][1].endswith(b"-00")


def test_the_queue_is_bounded_and_counts_what_it_drops() -> None:
    t = tracer(max_queue=3)
    t.add([record(1), record(2)])
    t.add([record(3), record(4)])
    assert [r.span_id for r in t.spans] == [1, 2, 3]
    assert t.dropped == 1
    t.add([record(5)])
    assert t.dropped == 2
    assert [r.span_id for r in t.take(2)] == [1, 2]
    assert [r.span_id for r in t.take(2)] == [3]
    assert t.take(2) == []


def test_spans_encode_to_an_export_request() -> None:
    rec = SpanRecord(
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0xAB,
        0x00F067AA0BA902B7,
        "GET default/r",
        SPAN_KIND_SERVER,
        1_000,
        2_000,
        [("http.response.status_code", 503), ("url.path", "/x"), ("ok", False), ("f", 0.5)],
        "HTTP 503",
    )
    message = ExportTraceServiceRequest()
    message.ParseFromString(encode([rec], "edge"))
    (rs,) = message.resource_spans
    assert {kv.key: kv.value.string_value for kv in rs.resource.attributes}[
        "service.name"
    ] == "edge"
    (span,) = rs.scope_spans[0].spans
    assert span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.span_id.hex() == "00000000000000ab"
    assert span.parent_span_id.hex() == "00f067aa0ba902b7"
    assert (span.kind, span.start_time_unix_nano, span.end_time_unix_nano) == (2, 1_000, 2_000)
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert attrs["http.response.status_code"].int_value == 503
    assert attrs["url.path"].string_value == "/x"
    assert attrs["ok"].WhichOneof("value") == "bool_value"
    assert attrs["f"].double_value == 0.5
    assert (span.status.code, span.status.message) == (2, "HTTP 503")


def _reference(spans: list[SpanRecord], service: str) -> bytes:
    """The same request built from opentelemetry-proto message objects."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    from turnout import __version__

    def value(v: object) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        return AnyValue(string_value=str(v))

    out = []
    for rec in spans:
        span = Span(
            trace_id=rec.trace_id.to_bytes(16, "big"),
            span_id=rec.span_id.to_bytes(8, "big"),
            name=rec.name,
            kind=rec.kind,  # type: ignore[arg-type]
            start_time_unix_nano=rec.start_ns,
            end_time_unix_nano=rec.end_ns,
            attributes=[KeyValue(key=k, value=value(v)) for k, v in rec.attributes],
        )
        if rec.parent_id:
            span.parent_span_id = rec.parent_id.to_bytes(8, "big")
        if rec.error:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=rec.error))
        out.append(span)
    resource = Resource(
        attributes=[
            KeyValue(key="service.name", value=AnyValue(string_value=service)),
            KeyValue(key="service.version", value=AnyValue(string_value=__version__)),
            KeyValue(key="telemetry.sdk.name", value=AnyValue(string_value="turnout")),
        ]
    )
    scope = InstrumentationScope(name="turnout", version=__version__)
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=out)])
        ]
    )
    return request.SerializeToString()


def test_the_hand_encoding_is_byte_for_byte_what_the_protobuf_library_writes() -> None:
    spans = [
        SpanRecord(
            0x4BF92F3577B34DA6A3CE929D0E0E4736,
            0x00F067AA0BA902B7,
            0,
            "GET ünïcode/" + "r" * 200,
            SPAN_KIND_SERVER,
            1_765_000_000_123_456_789,
            1_765_000_000_223_456_789,
            [
                ("http.response.status_code", 200),
                ("negative", -5),
                ("big", 2**62),
                ("long", "x" * 300),
                ("yes", True),
                ("no", False),
                ("ratio", 0.25),
                ("empty", ""),
            ],
            "",
        ),
        SpanRecord(1, 2, 3, "GET", 3, 5, 6, [], "HTTP 502"),
    ]
    assert encode(spans, "edge") == _reference(spans, "edge")
    assert encode([], "edge") == _reference([], "edge")
