"""Per-Gateway trace sampling and the release version, end to end: a real ``turnout
serve`` (serve flag ``--trace-sample-ratio 0``) with three Gateways — one without
annotations, one annotated to sample everything, one annotated to keep no errors — exports
to a real OTLP/HTTP receiver; an A/B Release on the sampled Gateway's backend shows which
version each request went to, in the span and in the request's flow."""

from __future__ import annotations

import uuid

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.otlp_receiver import OtlpReceiver, ReceivedSpan, start_receiver
from tests.integration.releases.helpers import apply, release, wait_phase
from turnout.testing import BackgroundLoop, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import request

SERVER = 2  # Span.SpanKind
RATIO = "turnout.dev/trace-sample-ratio"
KEEP_ERRORS = "turnout.dev/trace-keep-errors"


def _gateway(name: str, port: int, notes: dict[str, str]) -> dict[str, object]:
    gw = gateway(name=name, port=port)
    gw["metadata"]["annotations"] = notes  # type: ignore[index]
    return gw


def _rid() -> str:
    return str(uuid.uuid4())


def _server(recv: OtlpReceiver, rid: str) -> ReceivedSpan:
    spans = wait_until(lambda: recv.by_request(rid), 10.0, f"the spans of request {rid}")
    return next(s for s in spans if s.kind == SERVER)


def test_each_gateway_samples_as_annotated_and_spans_name_the_release_version(
    serve: ServeFactory, echo: EchoFactory, bg: BackgroundLoop
) -> None:
    recv = start_receiver(bg)
    try:
        plain, loud, quiet = free_port(), free_port(), free_port()
        stable, candidate = echo("orders-v1"), echo("orders-v2")
        dead = free_port()
        proc = serve(
            dump(
                gateway(port=plain),
                _gateway("loud", loud, {RATIO: "1"}),
                _gateway("quiet", quiet, {KEEP_ERRORS: "false"}),
                backend("orders", stable.port),
                backend("orders-v2", candidate.port),
                backend("gone", dead),
                backend("pay", stable.port),
                backend("pay-v2", candidate.port),
                route("pay", [to("pay", "/pay")], gateway_name="loud"),
                *[
                    route(f"r-{gw}", [to("gone", "/gone"), to("orders")], gateway_name=gw)
                    for gw in ("gw", "loud", "quiet")
                ],
            ),
            args=["--trace-endpoint", recv.url, "--trace-sample-ratio", "0"],
        )
        beta = {"x-beta": "yes"}
        apply(
            proc,
            release(
                "orders-v2",
                "orders",
                "orders-v2",
                strategy={"abTest": {"headers": [{"name": "X-Beta", "value": "yes"}]}},
            ),
        )
        apply(
            proc,
            release(
                "pay-v2", "pay", "pay-v2", strategy={"blueGreen": {"previewKey": "pay-preview"}}
            ),
        )
        wait_phase(proc, "orders-v2", "Paused")
        wait_phase(proc, "pay-v2", "Paused")
        wait_until(
            lambda: request(loud, "/", headers=beta).json()["pod"] == "orders-v2",
            10.0,
            "the A/B split in force",
        )

        # the serve flag's ratio 0 on the plain Gateway, the annotation's 1 on "loud"
        unsampled = request(plain, "/", headers={"x-request-id": _rid()})
        assert unsampled.json()["headers"]["Traceparent"][0].endswith("-00")
        on_stable, on_candidate = _rid(), _rid()
        sampled = request(loud, "/", headers={"x-request-id": on_stable})
        assert sampled.json()["headers"]["Traceparent"][0].endswith("-01")
        assert sampled.json()["pod"] == "orders-v1"
        reply = request(loud, "/", headers={"x-request-id": on_candidate, **beta})
        assert reply.json()["pod"] == "orders-v2"
        stable_span = _server(recv, on_stable)
        assert stable_span.attributes["turnout.release.version"] == "default/orders-v2:stable"
        candidate_span = _server(recv, on_candidate)
        assert candidate_span.attributes["turnout.release.version"] == (
            "default/orders-v2:candidate"
        )
        assert candidate_span.attributes["turnout.backend"] == "default/orders-v2"
        # ... and the request's flow (``turnout trace``) says the same
        code, body = proc.api("GET", f"/api/v1/trace/requests/{on_candidate}")
        assert code == 200, body
        assert body["request"]["releaseVersion"] == "default/orders-v2:candidate"

        # a blue-green preview request (its preview key) went to the candidate too
        key = {"x-turnout-routing-key": "pay-preview"}
        wait_until(
            lambda: request(loud, "/pay", headers=key).json()["pod"] == "orders-v2",
            10.0,
            "the blue-green preview in force",
        )
        preview = _rid()
        headers = {"x-request-id": preview, **key}
        assert request(loud, "/pay", headers=headers).json()["pod"] == "orders-v2"
        assert _server(recv, preview).attributes["turnout.release.version"] == (
            "default/pay-v2:candidate"
        )

        # errors: kept on the plain Gateway (serve default), not on "quiet"
        dropped, kept = _rid(), _rid()
        assert request(quiet, "/gone", headers={"x-request-id": dropped}).status == 502
        assert request(plain, "/gone", headers={"x-request-id": kept}).status == 502
        assert _server(recv, kept).status == 2  # an error span
        # one worker exports in order: what came before ``kept`` is all there
        assert recv.by_request(dropped) == []
        # no release on the plain Gateway's route: no version recorded
        assert "turnout.release.version" not in _server(recv, kept).attributes
    finally:
        bg.run(recv.stop())
