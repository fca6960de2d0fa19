"""``turnout serve`` tracing flags over the OpenTelemetry environment variables."""

from __future__ import annotations

import pytest

from turnout.cli.serve import ServeFlags, default_fields, trace_endpoint
from turnout.observe.accesslog import DEFAULT_FIELDS
from turnout.observe.tracing import TracingSettings

COLLECTOR = "http://collector:4318"


def test_the_flag_wins_then_the_traces_variable_then_the_generic_one() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/custom",
        "OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR,
    }
    assert trace_endpoint("http://flag/v1/traces", env) == "http://flag/v1/traces"
    assert trace_endpoint("off", env) == ""
    assert trace_endpoint("", env) == "http://traces:4318/custom"
    assert trace_endpoint("", {"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR + "/"}) == (
        COLLECTOR + "/v1/traces"
    )
    assert trace_endpoint("", {}) == ""


def flags(**kw: object) -> ServeFlags:
    base: dict[str, object] = dict(
        files=[],
        workers=1,
        admin_address="127.0.0.1:0",
        access_log="off",
        access_log_fields="",
        header_timeout=1.0,
        idle_timeout=1.0,
        request_timeout=0.0,
        stream_idle_timeout=1.0,
        drain_timeout=1.0,
        max_url_bytes=1,
        max_header_bytes=1,
        max_headers=1,
        max_body_bytes=0,
        worker_timeout=1.0,
        watch=False,
        log_level="info",
    )
    base.update(kw)
    return ServeFlags(**base)  # type: ignore[arg-type]


def test_bad_values_are_refused_naming_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    with pytest.raises(ValueError, match="--trace-sample-ratio must be between 0 and 1"):
        flags(trace_sample_ratio=1.5).tracing()
    with pytest.raises(ValueError, match="--trace-endpoint must be an http"):
        flags(trace_endpoint="collector:4318").tracing()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge")
    settings = flags(trace_endpoint=COLLECTOR + "/v1/traces", trace_sample_ratio=0.1).tracing()
    assert (settings.endpoint, settings.ratio, settings.service_name) == (
        COLLECTOR + "/v1/traces",
        0.1,
        "edge",
    )


def test_trace_ids_join_the_default_log_fields_when_tracing_is_on() -> None:
    assert default_fields(TracingSettings()) == DEFAULT_FIELDS
    on = default_fields(TracingSettings(endpoint=COLLECTOR))
    assert on == (*DEFAULT_FIELDS, "trace_id", "span_id")
