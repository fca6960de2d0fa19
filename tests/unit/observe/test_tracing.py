"""The tracer's sampling, the bounded span queue, the upstream ``traceparent`` per
attempt, and the OTLP encoding (decoded back with opentelemetry-proto)."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from turnout.observe.flowrecord import ATTEMPTS
from turnout.observe.otlp import encode
from turnout.observe.spanencode import SPAN_KIND_CLIENT, SPAN_KIND_SERVER
from turnout.observe.tracing import Tracer, TracingSettings

ON = "http://127.0.0.1:4318/v1/traces"
SAMPLED = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNSAMPLED = SAMPLED[:-2] + b"00"


def tracer(**kw: object) -> Tracer:
    return Tracer(TracingSettings(endpoint=ON, **kw))  # type: ignore[arg-type]


def flow(
    rid: bytes,
    *,
    attempts: int = 1,
    status: int = 200,
    attempt_status: int = 200,
    key: bytes = b"",
    release: str = "",
    path: bytes = b"/x",
    parent: int = 0x00F067AA0BA902B7,
) -> tuple[Any, ...]:
    """A kept request's record, as ``proxy/spans.request_flow`` builds it."""
    tries = [("127.0.0.1:9000", 10.001, 10.003, attempt_status, "", 0, 0xA, "127.0.0.1", 9000, "")][
        :attempts
    ]
    return (
        rid, b"GET", path, "shop", 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0xF0, True,
        1_700_000_000.0, 10.0, 10.010, status, "default/gw/http", "default/r", "default/b",
        "127.0.0.1:9000", key, bool(key), b"", tries, parent, b"http", b"10.0.0.1", b"1.1",
        b"curl/8", 0, 12, 8080, ("RequestHeaderModifier", "SecurityPolicy"), release,
    )  # fmt: skip


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
    assert not drop.keep(drop.begin({}), 503)  # decided when the request begins
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


def test_the_queue_is_bounded_in_spans_and_counts_what_it_drops() -> None:
    t = tracer(max_queue=5)
    t.add(flow(b"1"), 2)
    t.add(flow(b"2"), 2)
    t.add(flow(b"3"), 2)  # 6 spans would not fit
    assert [r[0] for r in t.records] == [b"1", b"2"] and t.queued == 4
    assert t.dropped == 2
    t.add(flow(b"4", attempts=0), 1)
    assert t.queued == 5
    assert [r[0] for r in t.take(3)] == [b"1", b"2"]  # 4 spans: at least the limit
    assert [r[0] for r in t.take(3)] == [b"4"]
    assert t.take(3) == [] and t.queued == 0


def _decode(body: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    # The hand encoding is canonical: the library writes back the very same bytes.
    assert message.SerializeToString() == body
    return message


def test_a_kept_request_encodes_to_a_server_and_a_client_span() -> None:
    rec = flow(b"r-1", status=503, attempt_status=503, key=b"feature-x", release="v2")
    message = _decode(encode([rec], "edge"))
    (rs,) = message.resource_spans
    resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
    assert resource["service.name"] == "edge"
    client, server = rs.scope_spans[0].spans
    assert server.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert server.span_id.hex() == "00000000000000f0"
    assert server.parent_span_id.hex() == "00f067aa0ba902b7"
    assert (server.kind, server.name) == (SPAN_KIND_SERVER, "GET default/r")
    # Unix nanoseconds from float seconds: exact to well under a microsecond
    assert abs(server.start_time_unix_nano - 1_700_000_010_000_000_000) < 1000
    assert abs(server.end_time_unix_nano - 1_700_000_010_010_000_000) < 1000
    attrs = {kv.key: kv.value for kv in server.attributes}
    assert attrs["http.response.status_code"].int_value == 503
    assert attrs["url.path"].string_value == "/x"
    assert attrs["turnout.request_id"].string_value == "r-1"
    assert attrs["turnout.sandbox.override"].WhichOneof("value") == "bool_value"
    assert attrs["turnout.release.version"].string_value == "v2"
    assert attrs["turnout.filters"].string_value == "RequestHeaderModifier,SecurityPolicy"
    assert attrs["user_agent.original"].string_value == "curl/8"
    assert attrs["server.port"].int_value == 8080
    assert (server.status.code, server.status.message) == (2, "HTTP 503")
    assert client.kind == SPAN_KIND_CLIENT and client.parent_span_id == server.span_id
    c_attrs = {kv.key: kv.value for kv in client.attributes}
    assert c_attrs["turnout.endpoint"].string_value == "127.0.0.1:9000"
    assert c_attrs["server.port"].int_value == 9000
    assert c_attrs["error.type"].string_value == "503"
    assert abs(client.start_time_unix_nano - 1_700_000_010_001_000_000) < 1000


def test_unusual_values_encode_exactly_as_the_protobuf_library_would() -> None:
    long_path = "/ünïcode/".encode() + b"r" * 300
    rid = "ä".encode() + b"-" * 200  # a client's x-request-id: long and not ASCII
    rec = flow(rid, path=long_path, status=200, attempt_status=0, release="")
    attempts = rec[ATTEMPTS]
    attempts.append(("unix:/s", 10.002, 10.003, 0, "connect failed", 1, 0xC, "", 0, ""))
    attempts.append(("127.0.0.1:9100", 10.002, 0.0, 200, "", 0, 0xD, "127.0.0.1", 9100, "m/b"))
    message = _decode(encode([rec, flow(b"r-2", parent=0)], "edge"))
    spans = message.resource_spans[0].scope_spans[0].spans
    assert len(spans) == 6
    _, unix, mirror, server = spans[:4]
    attrs = {kv.key: kv.value for kv in server.attributes}
    assert attrs["url.path"].string_value == long_path.decode("latin-1")
    assert attrs["turnout.request_id"].string_value == rid.decode("latin-1")
    assert (unix.status.message, len(unix.attributes)) == ("connect failed", 5)
    m_attrs = {kv.key: kv.value for kv in mirror.attributes}
    assert m_attrs["turnout.mirror"].bool_value and m_attrs["turnout.backend"].string_value == "m/b"
    assert not spans[5].parent_span_id  # a root span
    assert _decode(encode([], "edge")).resource_spans[0].scope_spans[0].spans == []


def test_b3_is_rewritten_to_name_the_attempt_when_it_was_the_context_continued() -> None:
    t = tracer()
    single = b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"
    trace = t.begin({b"b3": single})
    headers = [(b"b3", single), (b"host", b"shop")]
    trace.attempt(headers, "127.0.0.1:1", "127.0.0.1", 1, 1.0)
    span = b"%016x" % trace.attempts[0].span_id
    parent = b"%016x" % trace.span_id
    assert headers[0] == (b"b3", b"80f198ee56343ba864fe8b2a57d3eff7-" + span + b"-1-" + parent)
    assert headers[2][0] == b"traceparent"  # added beside it
    assert headers[2][1].split(b"-")[1:3] == [b"80f198ee56343ba864fe8b2a57d3eff7", span]
    multi = {b"x-b3-traceid": b"a3ce929d0e0e4736", b"x-b3-spanid": b"00f067aa0ba902b7"}
    multi[b"x-b3-sampled"] = b"0"
    trace = t.begin(multi)
    headers = list(multi.items())
    trace.attempt(headers, "127.0.0.1:1", "127.0.0.1", 1, 1.0)
    trace.attempt_end(502, "", 2.0)
    trace.attempt(headers, "127.0.0.1:2", "127.0.0.1", 2, 3.0)  # a retry: its own span
    got = dict(headers)
    assert got[b"x-b3-traceid"] == b"a3ce929d0e0e4736"  # a 64-bit id stays 64-bit
    assert got[b"x-b3-spanid"] == b"%016x" % trace.attempts[1].span_id
    assert got[b"x-b3-sampled"] == b"0" and len(headers) == 4
    # next to a valid traceparent, B3 is the caller's business: left as received
    trace = t.begin({b"traceparent": SAMPLED, b"b3": single})
    headers = [(b"traceparent", SAMPLED), (b"b3", single)]
    trace.attempt(headers, "127.0.0.1:1", "127.0.0.1", 1, 1.0)
    assert headers[1] == (b"b3", single) and headers[0][1] != SAMPLED


def test_a_retry_replaces_the_traceparent_the_first_attempt_added() -> None:
    trace = tracer().begin({b"host": b"shop"})
    headers = [(b"host", b"shop")]
    trace.attempt(headers, "127.0.0.1:1", "127.0.0.1", 1, 1.0)
    headers.insert(0, (b"x-added-later", b"1"))  # the index moved: found by scanning
    trace.attempt(headers, "127.0.0.1:2", "127.0.0.1", 2, 2.0)
    assert [n for n, _ in headers].count(b"traceparent") == 1
    trace.attempt(headers, "127.0.0.1:3", "127.0.0.1", 3, 3.0)
    values = [v for n, v in headers if n == b"traceparent"]
    assert values == [b"00-%032x-%016x-01" % (trace.trace_id, trace.attempts[2].span_id)]
