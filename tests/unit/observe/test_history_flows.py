"""Request flows filed by request id next to the keyed history, bounded."""

from __future__ import annotations

from typing import Any

from turnout.observe.history import RequestHistory, flow_doc


def record(rid: bytes, status: int = 200) -> tuple[Any, ...]:
    """What ``proxy/spans.request_flow`` ships: raw values, formatted by the supervisor."""
    attempts = [
        ("127.0.0.1:9000", 10.001, 10.003, 500, "", 0, 0xA),
        ("127.0.0.1:9001", 10.004, 0.0, 0, "upstream error", 1, 0xB),
    ]
    return (
        rid, b"GET", b"/x", "shop", 0x4BF9, 0xF0, True, 1_700_000_000.0, 10.0, 10.010,
        status, "default/gw/http", "default/r", "default/b", "127.0.0.1:9001",
        b"feature-x", True, b"", attempts,
    )  # fmt: skip


def test_a_flow_record_becomes_the_api_document() -> None:
    doc = flow_doc(record(b"r-1"))
    assert doc["requestId"] == "r-1" and doc["traceId"] == "0" * 28 + "4bf9"
    assert doc["spanId"] == "00000000000000f0" and doc["time"] == 1_700_000_010.0
    assert doc["durationMs"] == 10.0 and doc["routingKey"] == "feature-x"
    first, second = doc["attempts"]
    assert (first["startMs"], first["durationMs"], first["status"]) == (1.0, 2.0, 500)
    # an attempt still open when the request ended lasts until the end
    assert (second["startMs"], second["durationMs"]) == (4.0, 6.0)
    assert second["error"] == "upstream error" and second["spanId"] == "000000000000000b"


def test_flows_are_found_by_id_and_the_oldest_are_forgotten() -> None:
    history = RequestHistory(max_flows=2)
    history.add_flows([record(b"a"), record(b"b"), record(b"")])
    history.add_flows([record(b"c", 503)])
    assert history.find("a") is None
    found = history.find("c")
    assert found is not None and found["status"] == 503
    assert history.find("b") is not None


def test_a_keyed_request_is_found_without_a_flow() -> None:
    history = RequestHistory()
    history.add([("k", 1.0, 2.0, "GET", "/", "default/r", "default/b", "e", 200, "rid")])
    found = history.find("rid")
    assert found is not None and found["key"] == "k" and found["endpoint"] == "e"
    assert history.find("other") is None


def test_filters_release_and_mirrors_are_shown_and_older_records_still_read() -> None:
    old = flow_doc(record(b"r-1"))
    assert (old["filters"], old["releaseVersion"], old["mirrors"]) == ([], "", [])
    attempts = [
        ("127.0.0.1:9000", 10.001, 10.003, 200, "", 0, 0xA, "127.0.0.1", 9000, ""),
        ("127.0.0.1:9100", 10.001, 10.002, 0, "connect failed", 0, 0xB, "127.0.0.1", 9100, "m/b"),
    ]
    newer = (*record(b"r-2")[:18], attempts, 0, b"http", b"10.0.0.1", b"1.1", None, 0, 0, 80)
    doc = flow_doc((*newer, ("SecurityPolicy", "RequestMirror"), "v2"))
    assert doc["filters"] == ["SecurityPolicy", "RequestMirror"]
    assert doc["releaseVersion"] == "v2"
    assert [a["endpoint"] for a in doc["attempts"]] == ["127.0.0.1:9000"]
    (mirror,) = doc["mirrors"]
    assert (mirror["backend"], mirror["error"], mirror["durationMs"]) == (
        "m/b",
        "connect failed",
        1.0,
    )
