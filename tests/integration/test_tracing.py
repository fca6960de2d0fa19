"""OpenTelemetry tracing end to end: a real ``turnout serve`` exports to a real OTLP/HTTP
receiver (protobuf decoded with opentelemetry-proto) while echo upstreams report the
``traceparent`` they were sent."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import EchoFactory, ServeFactory
from tests.e2e.conftest import Cli
from tests.integration.otlp_receiver import OtlpReceiver, ReceivedSpan, start_receiver
from turnout.testing import BackgroundLoop, TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import request

SERVER, CLIENT = 2, 3  # Span.SpanKind
ERROR = 2  # Status.StatusCode
RETRY_5XX = {"numRetries": 2, "retryOn": {"triggers": ["5xx", "connect-failure", "reset"]}}
PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
ADD_HEADER = {
    "type": "RequestHeaderModifier",
    "requestHeaderModifier": {"add": [{"name": "x-traced", "value": "1"}]},
}


@pytest.fixture(scope="module")
def receiver(bg: BackgroundLoop) -> Iterator[OtlpReceiver]:
    recv = start_receiver(bg)
    yield recv
    bg.run(recv.stop())


def _config(port: int, good: int, bad: int, dead: int) -> str:
    return dump(
        gateway(port=port),
        backend("shop", good),
        backend("flaky", bad, good, retry=RETRY_5XX, loadBalancer={"type": "RoundRobin"}),
        backend("gone", dead),
        route(
            "r", [to("flaky", "/flaky", filters=[ADD_HEADER]), to("gone", "/gone"), to("shop", "/")]
        ),
    )


@pytest.fixture(scope="module")
def traced(
    serve_module: ServeFactory,
    echo_module: EchoFactory,
    receiver: OtlpReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[int, TurnoutProcess, Path]:
    """A gateway sampling everything, exporting to ``receiver``; its access log path."""
    port = free_port()
    good, bad = echo_module("good-0"), echo_module("bad-0")
    bad.force_status = 500
    log = tmp_path_factory.mktemp("log") / "access.log"
    proc = serve_module(
        _config(port, good.port, bad.port, free_port()),
        args=["--trace-endpoint", receiver.url],
        access_log=str(log),
    )
    return port, proc, log


def _rid() -> str:
    return str(uuid.uuid4())


def _spans(receiver: OtlpReceiver, rid: str, count: int) -> list[ReceivedSpan]:
    return wait_until(
        lambda: (s := receiver.by_request(rid)) and len(s) >= count and s,
        10.0,
        f"{count} spans of request {rid}",
    )


def _one(spans: list[ReceivedSpan], kind: int) -> ReceivedSpan:
    found = [s for s in spans if s.kind == kind]
    assert len(found) == 1, spans
    return found[0]


def test_an_incoming_traceparent_is_continued_and_passed_upstream(
    traced: tuple[int, TurnoutProcess, Path], receiver: OtlpReceiver
) -> None:
    port, _, log = traced
    rid = _rid()
    parent = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"
    reply = request(port, "/items?secret=1", headers={"traceparent": parent, "x-request-id": rid})
    assert reply.status == 200
    seen = reply.json()["headers"]["Traceparent"]
    spans = _spans(receiver, rid, 2)
    server, client = _one(spans, SERVER), _one(spans, CLIENT)
    assert server.trace_id == client.trace_id == PARENT_TRACE
    assert server.parent_id == PARENT_SPAN  # continued, not restarted
    assert client.parent_id == server.span_id
    # the upstream saw the client span as its parent, in the same trace, sampled
    assert seen == [f"00-{PARENT_TRACE}-{client.span_id}-01"]
    assert server.name == "GET default/r"
    assert server.attributes["http.request.method"] == "GET"
    assert server.attributes["url.path"] == "/items"  # the query may hold secrets
    assert "url.query" not in server.attributes
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["turnout.request_id"] == rid
    assert server.attributes["turnout.backend"] == "default/shop"
    assert server.attributes["server.port"] == port
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["http.response.status_code"] == 200
    assert "http.request.resend_count" not in client.attributes
    assert server.status == client.status == 0
    assert server.start <= client.start <= client.end <= server.end
    assert server.resource["service.name"] == "turnout"
    assert receiver.content_types == {"application/x-protobuf"}
    # the access log names the same trace and server span
    line = wait_until(
        lambda: next((ln for ln in log.read_text().splitlines() if rid in ln), None),
        5.0,
        "the access log line",
    )
    doc = json.loads(line)
    assert (doc["trace_id"], doc["span_id"]) == (PARENT_TRACE, server.span_id)


def test_a_request_without_context_starts_a_trace(
    traced: tuple[int, TurnoutProcess, Path], receiver: OtlpReceiver
) -> None:
    port = traced[0]
    rid = _rid()
    reply = request(port, "/", headers={"x-request-id": rid})
    seen = reply.json()["headers"]["Traceparent"][0]
    server = _one(_spans(receiver, rid, 2), SERVER)
    assert server.parent_id == ""
    assert seen.startswith(f"00-{server.trace_id}-") and seen.endswith("-01")


def test_b3_is_accepted(traced: tuple[int, TurnoutProcess, Path], receiver: OtlpReceiver) -> None:
    port = traced[0]
    rid = _rid()
    request(port, "/", headers={"b3": f"{PARENT_TRACE}-{PARENT_SPAN}-1", "x-request-id": rid})
    server = _one(_spans(receiver, rid, 2), SERVER)
    assert (server.trace_id, server.parent_id) == (PARENT_TRACE, PARENT_SPAN)
    rid = _rid()
    request(
        port,
        "/",
        headers={
            "x-b3-traceid": "a3ce929d0e0e4736",
            "x-b3-spanid": PARENT_SPAN,
            "x-request-id": rid,
        },
    )
    server = _one(_spans(receiver, rid, 2), SERVER)
    assert server.trace_id == "0000000000000000a3ce929d0e0e4736"


def test_every_retry_is_a_client_span_of_its_own(
    traced: tuple[int, TurnoutProcess, Path], receiver: OtlpReceiver, tmp_path: Path
) -> None:
    port = traced[0]
    # round robin over (bad, good): one of two requests meets the bad endpoint first
    rids = [_rid() for _ in range(2)]
    for rid in rids:
        assert request(port, "/flaky", headers={"x-request-id": rid}).status == 200
    retried = [s for rid in rids if len(s := _spans(receiver, rid, 2)) == 3]
    assert retried, "no request met the failing endpoint first"
    spans = retried[0]
    server = _one(spans, SERVER)
    clients = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start)
    assert len(clients) == 2
    first, second = clients
    assert {first.parent_id, second.parent_id} == {server.span_id}
    assert first.span_id != second.span_id
    assert first.attributes["http.response.status_code"] == 500
    assert first.status == ERROR and first.attributes["error.type"] == "500"
    assert second.attributes["http.request.resend_count"] == 1
    assert second.attributes["http.response.status_code"] == 200
    assert second.status == 0 and server.status == 0
    assert first.end <= second.start
    assert server.attributes["turnout.filters"] == "RequestHeader"
    _the_flow_shows_both_attempts(traced[1], server.attributes["turnout.request_id"], tmp_path)


def _the_flow_shows_both_attempts(proc: TurnoutProcess, rid: str, home: Path) -> None:
    """``turnout trace REQUEST_ID``: the hops, as a tree and as JSON."""
    path = f"/api/v1/trace/requests/{rid}"
    wait_until(lambda: proc.api("GET", path)[0] == 200, 5.0, "the request's flow")
    flow = proc.api("GET", path)[1]["request"]
    assert (flow["listener"], flow["route"], flow["backend"]) == (
        "default/gw/http",
        "default/r",
        "default/flaky",
    )
    attempts = flow["attempts"]
    assert [a["status"] for a in attempts] == [500, 200]
    assert [a["resendCount"] for a in attempts] == [0, 1]
    assert attempts[0]["startMs"] <= attempts[1]["startMs"] <= flow["durationMs"]
    assert flow["filters"] == ["RequestHeader"] and flow["mirrors"] == []
    cli = Cli(proc, home)
    tree = cli.ok("trace", rid)
    assert "filters    RequestHeader" in tree
    assert "GET /flaky → 200" in tree and "listener   default/gw/http" in tree
    assert "attempt 1" in tree and "attempt 2" in tree
    assert json.loads(cli.ok("trace", rid, "-o", "json")) == flow
    missing = cli("trace", "no-such-request")
    assert missing.code != 0 and "no request 'no-such-request' is remembered" in missing.err


def test_a_failed_request_is_an_error_span(
    traced: tuple[int, TurnoutProcess, Path], receiver: OtlpReceiver
) -> None:
    port = traced[0]
    rid = _rid()
    assert request(port, "/gone", headers={"x-request-id": rid}).status == 502
    spans = _spans(receiver, rid, 2)
    server, client = _one(spans, SERVER), _one(spans, CLIENT)
    assert server.status == ERROR and server.attributes["error.type"] == "502"
    assert client.status == ERROR and "http.response.status_code" not in client.attributes


def test_ratio_zero_keeps_errors_and_sampled_parents_only(
    serve: ServeFactory, echo: EchoFactory, bg: BackgroundLoop
) -> None:
    recv = start_receiver(bg)
    try:
        port = free_port()
        good = echo("good-0")
        serve(
            _config(port, good.port, good.port, free_port()),
            args=["--trace-endpoint", recv.url, "--trace-sample-ratio", "0"],
        )
        quiet, failed, kept, refused = _rid(), _rid(), _rid(), _rid()
        reply = request(port, "/", headers={"x-request-id": quiet})
        # not sampled: still one trace for the services, flagged so
        assert reply.json()["headers"]["Traceparent"][0].endswith("-00")
        unsampled = f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"
        request(port, "/", headers={"x-request-id": refused, "traceparent": unsampled})
        assert request(port, "/gone", headers={"x-request-id": failed}).status == 502
        sampled = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"
        request(port, "/", headers={"x-request-id": kept, "traceparent": sampled})
        assert _one(_spans(recv, failed, 2), SERVER).status == ERROR
        assert _one(_spans(recv, kept, 2), SERVER).parent_id == PARENT_SPAN
        # both were exported after the two unsampled requests, which never were
        assert recv.by_request(quiet) == [] and recv.by_request(refused) == []
    finally:
        bg.run(recv.stop())


def test_the_otel_environment_is_honoured_and_a_dead_collector_harms_nothing(
    serve: ServeFactory, echo: EchoFactory
) -> None:
    port = free_port()
    good = echo("good-0")
    dead = f"http://127.0.0.1:{free_port()}"
    proc = serve(
        _config(port, good.port, good.port, free_port()),
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": dead},
    )
    for _ in range(20):
        reply = request(port, "/")
        assert reply.status == 200
        assert "Traceparent" in reply.json()["headers"]  # tracing is on, from the env
    wait_until(
        lambda: "trace export to " + dead + "/v1/traces failed" in proc.stderr(),
        10.0,
        "the export failure to be logged",
    )
    wait_until(
        lambda: (
            proc.metric("turnout_trace_export_failures_total") >= 1
            and proc.metric("turnout_trace_spans_dropped_total") >= 1
        ),
        10.0,
        "the failed exports and dropped spans in /metrics",
    )


def test_the_exporter_backs_off_while_the_collector_is_down(bg: BackgroundLoop) -> None:
    from turnout.observe.otlp import MAX_BACKOFF, TraceExporter
    from turnout.observe.tracing import Tracer, TracingSettings

    def spans(n: int) -> None:
        """Queue ``n`` kept requests without upstream attempts (one server span each)."""
        for i in range(n):
            record = (b"r%d" % i, b"GET", b"/", "h", 1, i + 1, True, 0.0, 1.0, 2.0, 200)
            record += ("", "", "", "", b"", False, b"", [], 0, b"http", b"127.0.0.1", b"1.1")
            record += (None, 0, 0, 0, (), "")
            tracer.add(record, 1)

    recv = start_receiver(bg)
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"
    tracer = Tracer(TracingSettings(endpoint=dead, batch=2, timeout=2.0))

    async def scenario() -> list[float]:
        exporter = TraceExporter(tracer, asyncio.get_running_loop())
        exporter._client = httpx.AsyncClient(timeout=2.0)  # started without its task
        backoffs = []
        for _ in range(8):
            spans(3)
            await exporter.export_queued()
            backoffs.append(exporter.backoff)
        exporter.url = recv.url  # the collector is back
        spans(5)
        await exporter.export_queued()
        backoffs.append(exporter.backoff)
        await exporter.close()
        return backoffs

    try:
        backoffs = bg.run(scenario())
        assert backoffs[:3] == [1.0, 2.0, 4.0] and backoffs[7] == MAX_BACKOFF
        assert backoffs[8] == 0.0  # one success resets it
        # each failed round dropped the batch it tried; the rest waited in the queue
        assert tracer.export_failures == 8
        assert tracer.exported + tracer.dropped + tracer.queued == 8 * 3 + 5
        assert len(recv.spans) == tracer.exported > 0 and not tracer.records
    finally:
        bg.run(recv.stop())


def test_b3_is_continued_and_rewritten_for_the_upstream(
    traced: tuple[int, TurnoutProcess, Path], receiver: OtlpReceiver
) -> None:
    port = traced[0]
    rid = _rid()
    headers = {"x-request-id": rid, "X-B3-TraceId": PARENT_TRACE, "X-B3-SpanId": PARENT_SPAN}
    reply = request(port, "/", headers={**headers, "X-B3-Sampled": "1"})
    assert reply.status == 200
    seen = reply.json()["headers"]
    server, client = _one(_spans(receiver, rid, 2), SERVER), _one(_spans(receiver, rid, 2), CLIENT)
    assert server.trace_id == PARENT_TRACE and server.parent_id == PARENT_SPAN
    # the service gets B3 naming the gateway's client span, and a traceparent beside it
    assert seen["X-B3-Traceid"] == [PARENT_TRACE]
    assert seen["X-B3-Spanid"] == [client.span_id]
    assert seen["Traceparent"] == [f"00-{PARENT_TRACE}-{client.span_id}-01"]
