"""``turnout top``: live RPS, error share, p50/p99 and connections per route or backend.

Reads the server's ``/metrics`` (the supervisor's sum over its workers) twice, ``--interval``
apart, and shows the difference: requests per second, the share of 5xx, and p50/p99
estimated from the latency histogram's bucket deltas exactly as PromQL's
``histogram_quantile`` does (linear within a bucket). ``--once`` prints one frame and
exits (scripts, tests); otherwise a Rich ``Live`` table redraws in place until Ctrl-C.
``--by route|backend|pair`` picks the rows, ``--sort`` the column (descending; ``name``
ascending).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from turnout.cli.client import connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.observe.rates import (
    GROUPINGS,
    HEADERS,
    SORTS,
    Row,
    Sample,
    parse,
    quantile,
    rows,
    sort_rows,
)

__all__ = ["GROUPINGS", "SORTS", "Row", "Sample", "parse", "quantile", "rows", "sort_rows", "top"]


def render(items: list[Row], cur: Sample, interval: float) -> Group:
    g = cur.gauges
    summary = Text(
        f"revision {g.get('turnout_config_revision', 0):.0f}   "
        f"workers {g.get('turnout_workers', 0):.0f}   "
        f"open connections {g.get('turnout_downstream_connections_active', 0):.0f}   "
        f"rps {sum(r.rps for r in items):.1f}   (over {interval:g} s)"
    )
    table = Table(box=None, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for row in items:
        table.add_row(*row.cells())
    return Group(summary, table)


def top(conn: Connection, by: str, sort: str, interval: float, once: bool, limit: int) -> None:
    if by not in GROUPINGS:
        raise CliError(f"--by {by!r}: expected one of {', '.join(GROUPINGS)}")
    if sort not in SORTS:
        raise CliError(f"--sort {sort!r}: expected one of {', '.join(SORTS)}")
    if not 0.1 <= interval <= 3600:
        raise CliError(f"--interval {interval:g}: expected 0.1 to 3600 seconds")
    console = Console(highlight=False)
    with connect(conn) as client:

        def scrape() -> Sample:
            return parse(client.get_text("/metrics"), time.monotonic())

        prev = scrape()
        time.sleep(interval)
        cur = scrape()
        frame = _framer(by, sort, interval, limit)
        if once:
            console.print(frame(prev, cur))
            return
        with Live(frame(prev, cur), console=console, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    prev, cur = cur, scrape()
                    live.update(frame(prev, cur), refresh=True)
            except KeyboardInterrupt:
                return


def _framer(by: str, sort: str, interval: float, limit: int) -> Callable[[Sample, Sample], Group]:
    def frame(prev: Sample, cur: Sample) -> Group:
        return render(sort_rows(rows(prev, cur, by), sort)[:limit], cur, interval)

    return frame
