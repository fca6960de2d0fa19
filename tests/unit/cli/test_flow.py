"""``turnout trace REQUEST_ID`` drawing: the hop tree and the waterfall bars."""

from __future__ import annotations

from typing import Any

from turnout.cli.flow import BAR, bar, render


def flow(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "requestId": "r-1",
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "sampled": False,
        "time": 1_700_000_000.0,
        "durationMs": 40.0,
        "method": "POST",
        "path": "/orders",
        "status": 200,
        "listener": "default/gw/http",
        "route": "default/orders",
        "backend": "default/orders",
        "endpoint": "127.0.0.1:9001",
        "routingKey": "feature-x",
        "sandboxOverride": True,
        "answeredBy": "",
        "attempts": [
            {
                "endpoint": "127.0.0.1:9000",
                "startMs": 0.0,
                "durationMs": 10.0,
                "status": 0,
                "error": "connect failed",
                "resendCount": 0,
            },
            {
                "endpoint": "127.0.0.1:9001",
                "startMs": 20.0,
                "durationMs": 20.0,
                "status": 200,
                "error": "",
                "resendCount": 1,
            },
        ],
    }
    doc.update(overrides)
    return doc


def test_bars_sit_on_the_request_time_line() -> None:
    assert bar(0.0, 10.0, 40.0, 8) == "|██      |"
    assert bar(20.0, 20.0, 40.0, 8) == "|    ████|"
    assert bar(39.9, 0.001, 40.0, 8) == "|       █|"  # never empty, never past the end
    assert len(bar(0.0, 0.0, 0.0)) == BAR + 2


def test_the_tree_lists_the_hops_in_order() -> None:
    lines = render(flow()).splitlines()
    assert lines[0].startswith("POST /orders → 200 in 40.0ms")
    assert lines[1] == "trace 4bf92f3577b34da6a3ce929d0e0e4736 (kept as an error)"
    assert lines[2] == "├─ listener   default/gw/http"
    assert lines[3] == "├─ route      default/orders"
    assert lines[4] == "├─ backend    default/orders  (routing key feature-x: sandbox override)"
    assert lines[5].startswith("├─ attempt 1  127.0.0.1:9000") and "connect failed" in lines[5]
    assert lines[6].startswith("└─ attempt 2  127.0.0.1:9001") and " 200 " in lines[6]
    assert lines[5].index("|") == lines[6].index("|")  # the bars line up


def test_a_gateway_answer_and_a_keyed_record_without_trace() -> None:
    answered = render(flow(answeredBy="rate_limited", backend="", attempts=[], status=429))
    assert "├─ route      default/orders" in answered
    assert answered.endswith("└─ answered   by the gateway: rate_limited")
    keyed = {
        "key": "k",
        "requestId": "x",
        "method": "GET",
        "target": "/a",
        "status": 200,
        "durationMs": 3.0,
        "route": "default/a",
        "backend": "default/a",
        "endpoint": "127.0.0.1:1",
    }
    text = render(keyed)
    assert "(routing key k)" in text
    assert text.endswith("└─ endpoint   127.0.0.1:1  (no trace: hops unknown)")


def test_filters_release_and_mirrors_have_their_own_lines() -> None:
    mirror = {"endpoint": "127.0.0.1:9100", "startMs": 1.0, "durationMs": 2.0, "status": 200}
    mirror |= {"error": "", "resendCount": 0, "backend": "default/shadow"}
    text = render(
        flow(
            filters=["Security", "RequestHeader", "Mirror"],
            releaseVersion="v2",
            mirrors=[mirror],
        )
    )
    lines = text.splitlines()
    assert lines[4] == "├─ filters    Security → RequestHeader → Mirror"
    assert "├─ release    v2" in lines
    assert lines[-1].startswith("└─ mirror     127.0.0.1:9100") and "→ default/shadow" in lines[-1]
    assert lines[-1].index("|") == lines[-2].index("|")
