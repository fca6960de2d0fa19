"""The merged access-log ring behind ``turnout logs``: filters, order, bounds, events."""

from __future__ import annotations

import json

from turnout.observe.logring import LogFilter, LogRing


def _line(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def _ring() -> LogRing:
    ring = LogRing(size=10)
    ring.add_lines(
        [
            _line(status=200, route="default/api", path="/a", routing_key=None, consumer="acme"),
            _line(status=503, route="default/api", path="/b", routing_key="fx", consumer=None),
            _line(status=404, route=None, path="/c"),
            b"not json",
        ],
        worker=11,
    )
    ring.add_event("tunnels", "sandbox default/fx backend orders disconnected", routing_key="fx")
    ring.add_lines([_line(status=200, route="shop/web", path="/d")], worker=12)
    return ring


def _paths(ring: LogRing, flt: LogFilter, after: int = 0, limit: int = 100) -> list[object]:
    return [e.get("path", e.get("event")) for e in ring.recent(flt, after, limit)]


def test_filters() -> None:
    ring = _ring()
    assert _paths(ring, LogFilter()) == ["/a", "/b", "/c", "tunnels", "/d"]
    assert _paths(ring, LogFilter(status="5xx")) == ["/b"]
    assert _paths(ring, LogFilter(status="404")) == ["/c"]
    assert _paths(ring, LogFilter(route="default/api")) == ["/a", "/b"]
    assert _paths(ring, LogFilter(route="shop/*")) == ["/d"]
    assert _paths(ring, LogFilter(key="fx")) == ["/b", "tunnels"]
    assert _paths(ring, LogFilter(consumer="acme")) == ["/a"]
    assert _paths(ring, LogFilter(since=10**12)) == []


def test_after_limit_and_bound() -> None:
    ring = _ring()
    assert _paths(ring, LogFilter(), after=3) == ["tunnels", "/d"]
    assert _paths(ring, LogFilter(), limit=2) == ["tunnels", "/d"]
    ring.add_lines([_line(path=f"/{i}") for i in range(20)], worker=1)
    entries = ring.recent(LogFilter(), 0, 0)
    assert len(entries) == 10 and entries[-1]["path"] == "/19"
    assert entries[-1]["worker"] == 1 and entries[-1]["type"] == "request"
