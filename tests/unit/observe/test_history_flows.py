"""Request flows filed by request id next to the keyed history, bounded."""

from __future__ import annotations

from turnout.observe.history import RequestHistory


def test_flows_are_found_by_id_and_the_oldest_are_forgotten() -> None:
    history = RequestHistory(max_flows=2)
    history.add_flows([{"requestId": "a"}, {"requestId": "b"}, {"nothing": 1}])
    history.add_flows([{"requestId": "c", "status": 200}])
    assert history.find("a") is None
    assert history.find("c") == {"requestId": "c", "status": 200}
    assert history.find("b") == {"requestId": "b"}


def test_a_keyed_request_is_found_without_a_flow() -> None:
    history = RequestHistory()
    history.add([("k", 1.0, 2.0, "GET", "/", "default/r", "default/b", "e", 200, "rid")])
    found = history.find("rid")
    assert found is not None and found["key"] == "k" and found["endpoint"] == "e"
    assert history.find("other") is None
