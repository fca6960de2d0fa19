"""The console overview's live numbers on a fake clock: at most one scrape per second for
any number of polls, rates over the window, chart series between consecutive scrapes."""

from __future__ import annotations

from turnout.control.console.live import LiveRates

SCRAPE = """\
# TYPE turnout_requests counter
turnout_requests_total{route="default/a",backend="default/x",code="2xx"} %(ok)s
turnout_requests_total{route="default/a",backend="default/x",code="5xx"} %(bad)s
# TYPE turnout_config_revision gauge
turnout_config_revision 7.0
"""


class World:
    def __init__(self) -> None:
        self.now = 100.0
        self.ok = 0
        self.bad = 0
        self.scrapes = 0

    def clock(self) -> float:
        return self.now

    def scrape(self) -> str:
        self.scrapes += 1
        return SCRAPE % {"ok": float(self.ok), "bad": float(self.bad)}


def test_polls_share_one_scrape_a_second_and_rates_follow_traffic() -> None:
    w = World()
    live = LiveRates(w.scrape, clock=w.clock)
    assert live.table() == [] and live.series() == {"t": [], "routes": {}}
    live.tick()
    for _ in range(10):  # ten consoles polling in the same second
        w.now += 0.05
        live.tick()
    assert w.scrapes == 1
    w.now = 102.0
    w.ok, w.bad = 90, 10
    live.tick()
    assert w.scrapes == 2
    (row,) = live.table()
    assert row.name == "default/a" and row.rps == 50.0 and row.errors == 0.1
    assert live.gauges()["turnout_config_revision"] == 7.0
    series = live.series()
    assert series["t"] == [0.0]
    assert series["routes"]["default/a"]["rps"] == [50.0]
    assert series["routes"]["default/a"]["errors"] == [10.0]  # percent on the chart
    assert series["routes"]["default/a"]["p99"] == [None]  # no histogram: no latency


def test_the_table_spans_the_window_and_history_is_bounded() -> None:
    w = World()
    live = LiveRates(w.scrape, clock=w.clock, keep=5)
    for _ in range(20):
        live.tick()
        w.now += 1.0
        w.ok += 10
    assert len(live.samples) == 5 and len(live.points) == 5
    (row,) = live.table(window=3.0)
    assert row.rps == 10.0
