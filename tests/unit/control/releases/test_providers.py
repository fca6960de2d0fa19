"""Parsing Prometheus and JSON answers, and judging external readings."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.model.release import MetricSpec
from turnout.control.releases.providers import (
    ExternalMetrics,
    ProviderError,
    Reading,
    json_value,
    prometheus_value,
)


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {}, "value": [1.0, v]} for v in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_prometheus_answers() -> None:
    assert prometheus_value(vector("0.25", "9")) == 0.25  # the first sample
    assert prometheus_value(vector()) is None  # no series: no data
    assert prometheus_value(vector("NaN")) is None
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}
    assert prometheus_value(scalar) == 3.0
    with pytest.raises(ProviderError, match="parse error"):
        prometheus_value({"status": "error", "error": "parse error at char 3"})
    with pytest.raises(ProviderError, match="matrix"):
        prometheus_value({"status": "success", "data": {"resultType": "matrix", "result": []}})


def test_json_answers() -> None:
    body = {"candidate": {"successRate": 0.99, "tags": [1, "2.5"]}, "ok": True}
    assert json_value(body, "candidate.successRate") == 0.99
    assert json_value(body, "candidate.tags.1") == 2.5
    assert json_value(3, "") == 3.0
    assert json_value({"x": None}, "x") is None
    with pytest.raises(ProviderError, match=r"no 'candidate\.nope'"):
        json_value(body, "candidate.nope")
    with pytest.raises(ProviderError, match="boolean"):
        json_value(body, "ok")
    with pytest.raises(ProviderError, match="not a number"):
        json_value({"x": "high"}, "x")


def test_bad_metric_specs_say_why() -> None:
    with pytest.raises(ValueError, match="exactly one of 'prometheus' and 'web'"):
        MetricSpec.model_validate({"name": "m", "max": 1})
    with pytest.raises(ValueError, match="'min', 'max' or both"):
        MetricSpec.model_validate({"name": "m", "web": {"url": "http://x"}})


def test_readings_become_judgements() -> None:
    m = MetricSpec.model_validate(
        {"name": "m", "web": {"url": "http://x"}, "min": 0.9, "failureLimit": 1}
    )
    ext = ExternalMetrics((1, 1))

    def judged(reading: Reading) -> tuple[str, str]:
        ext.readings["m"] = reading
        (j,) = ext.judgements((m,))
        return j.outcome, j.message

    assert judged(Reading()) == ("inconclusive", "no reading yet")
    assert judged(Reading(at=1, error="ConnectError: refused"))[0] == "inconclusive"
    assert judged(Reading(at=1, value=None)) == ("inconclusive", "no data (an empty result)")
    assert judged(Reading(at=1, value=0.95)) == ("pass", "0.95 in [0.9, inf]")
    assert judged(Reading(at=1, value=0.5, outside=1))[0] == "inconclusive"  # failureLimit 1
    assert judged(Reading(at=1, value=0.5, outside=2)) == (
        "fail",
        "0.5 outside [0.9, inf] (2 readings in a row)",
    )
