"""The host-wide outlier table: two ``EndpointHealth`` records mapping one table (as two
workers do) count one run of errors, hold one ejection and release it at one instant."""

from __future__ import annotations

from pathlib import Path

from turnout.proxy.upstream.ejections import EjectionTable
from turnout.proxy.upstream.health import EndpointHealth, OutlierDetector, ejected_count


def _pair(tmp_path: Path, key: str = "10.0.0.1:80") -> tuple[EndpointHealth, EndpointHealth]:
    path = tmp_path / "outliers.table"
    EjectionTable.create(path, slots=16).close()
    a, b = EndpointHealth(key), EndpointHealth(key)
    a.share(EjectionTable.open(path))  # "worker 1"
    b.share(EjectionTable.open(path))  # "worker 2": its own mapping of the same file
    return a, b


def _detector() -> OutlierDetector:
    return OutlierDetector(consecutive_5xx=3, base_ejection_time=30.0, max_ejection_percent=50)


def test_the_threshold_counts_the_hosts_errors(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    d1, d2 = _detector(), _detector()  # one detector per worker
    assert not d1.on_response(a, 500, 1.0, 2)
    assert not d2.on_response(b, 500, 2.0, 2)
    assert a.available(2.5)  # two errors: still in
    assert d1.on_response(a, 503, 3.0, 2)  # the third, wherever it happens, ejects
    assert not b.available(3.0)  # the other worker sees it at its next pick
    assert b.ejected_now(3.0)
    assert ejected_count([b], 3.0) == 1
    # one ejection, released at the same instant everywhere
    assert not a.available(32.9) and not b.available(32.9)
    assert a.available(33.0) and b.available(33.0)
    assert a.available_since == b.available_since == 33.0


def test_a_success_anywhere_resets_the_run(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    d1, d2 = _detector(), _detector()
    d1.on_response(a, 500, 1.0, 2)
    d1.on_response(a, 500, 2.0, 2)
    d2.on_response(b, 200, 3.0, 2)
    assert not d1.on_response(a, 500, 4.0, 2)
    assert a.available(4.0) and b.available(4.0)
    assert a.consecutive_5xx == 1


def test_the_multiplier_is_shared_too(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    d1, d2 = _detector(), _detector()
    for t in (1.0, 2.0, 3.0):
        d1.on_response(a, 500, t, 2)
    assert b.available(33.0)  # first ejection: 30 s
    for t in (34.0, 35.0, 36.0):
        d2.on_response(b, 500, t, 2)  # second one, by the other worker: 2 x 30 s
    assert not a.available(95.9)
    assert a.available(96.0)


def test_rows_are_per_endpoint_and_a_full_table_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "outliers.table"
    table = EjectionTable.create(path, slots=2)
    rows = {table.row_for(k) for k in ("a:1", "b:1")}
    assert len(rows) == 2 and -1 not in rows
    assert table.row_for("a:1") in rows  # claimed once
    assert table.row_for("c:1") == -1  # full
    lone = EndpointHealth("c:1")
    lone.share(table)
    assert lone.shared is None  # per-worker state, as without a table
    assert _detector().on_response(lone, 500, 1.0, 1) is False
    table.close()
