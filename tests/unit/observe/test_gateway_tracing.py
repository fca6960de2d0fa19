"""A Gateway's own trace sampling (``turnout.dev/trace-*`` annotations): validated with
located errors, compiled onto its listeners, and applied by the tracer in place of the
serve flags; and the release version a traced request records."""

from __future__ import annotations

from typing import Any

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.observe.tracing import GatewayTracing, Tracer, TracingSettings
from turnout.proxy.snapshot.builder import gateway_tracing
from turnout.testing.manifests import backend, dump, gateway

RATIO = "turnout.dev/trace-sample-ratio"
KEEP_ERRORS = "turnout.dev/trace-keep-errors"
SAMPLED = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def annotated(**notes: str) -> dict[str, Any]:
    gw = gateway()
    gw["metadata"]["annotations"] = {
        {"ratio": RATIO, "keep": KEEP_ERRORS}[k]: v for k, v in notes.items()
    }
    return gw


def problems(gw: dict[str, Any]) -> list[str]:
    resources, parse_problems = parse_text(dump(gw, backend("b", 8080)), "gw.yaml")
    assert parse_problems == []
    return [str(p) for p in validate(resources)[1]]


def test_good_annotations_validate_and_compile() -> None:
    assert problems(annotated(ratio="0.25", keep="false")) == []
    resources, _ = parse_text(dump(annotated(ratio="0.25", keep="false")), "gw.yaml")
    own = gateway_tracing(resources[0].obj)  # type: ignore[arg-type]
    assert own is not None and (own.ratio, own.keep_errors) == (0.25, False)
    only_ratio = gateway_tracing(parse_text(dump(annotated(ratio="1")), "g")[0][0].obj)  # type: ignore[arg-type]
    assert only_ratio is not None and (only_ratio.ratio, only_ratio.keep_errors) == (1.0, None)
    assert gateway_tracing(parse_text(dump(gateway()), "g")[0][0].obj) is None  # type: ignore[arg-type]


def test_bad_annotations_are_located_errors() -> None:
    text = dump(annotated(ratio="1.5", keep="yes"), backend("b", 8080))
    lines = text.splitlines()
    found = problems(annotated(ratio="1.5", keep="yes"))
    ratio_line = next(i for i, ln in enumerate(lines, 1) if RATIO in ln)
    keep_line = next(i for i, ln in enumerate(lines, 1) if KEEP_ERRORS in ln)
    assert found == [
        f"gw.yaml:{ratio_line}:5: Gateway default/gw: metadata.annotations.{RATIO}: "
        "'1.5' is not a sampling ratio: give a number from 0 to 1",
        f"gw.yaml:{keep_line}:5: Gateway default/gw: metadata.annotations.{KEEP_ERRORS}: "
        '\'yes\' is neither "true" nor "false"',
    ]
    for bad in ("nan", "-0.1", "half", ""):
        assert len(problems(annotated(ratio=bad))) == 1, bad


def test_a_gateways_own_settings_replace_the_serve_flags() -> None:
    tracer = Tracer(TracingSettings(endpoint="http://x/v1/traces", ratio=0.0))
    assert not tracer.begin({}).sampled
    assert tracer.begin({}, GatewayTracing(ratio=1.0)).sampled
    assert not tracer.begin({}, GatewayTracing(keep_errors=False)).sampled  # ratio stays
    # parent-based as ever: a sampled caller is kept whatever the Gateway's ratio
    assert (
        Tracer(TracingSettings(endpoint="x"))
        .begin({b"traceparent": SAMPLED}, GatewayTracing(ratio=0.0))
        .sampled
    )
    quiet = tracer.begin({}, GatewayTracing(keep_errors=False))
    assert not tracer.keep(quiet, 503)
    assert tracer.keep(tracer.begin({}), 503)  # the serve default keeps errors
    loud = Tracer(TracingSettings(endpoint="x", ratio=0.0, keep_errors=False))
    assert loud.keep(loud.begin({}, GatewayTracing(keep_errors=True)), 503)
    assert not loud.keep(loud.begin({}), 503)
