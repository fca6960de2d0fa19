"""Access-log sampling and reopening, per-Consumer usage, refusals and certificate expiry
as Prometheus families."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from turnout.observe.accesslog import open_access_log
from turnout.observe.logwriter import LogWriter
from turnout.observe.metrics import Aggregate, TurnoutCollector
from turnout.observe.stats import MAX_CONSUMERS, OTHER_CONSUMER, WorkerStats

STATUS: dict[str, Any] = {
    "revision": 3,
    "reloads_ok": 2,
    "reloads_failed": 1,
    "live_workers": 1,
    "worker_restarts": 0,
    "certificates": [("default/gw", "https", "Secret default/site", 1_900_000_000.0)],
}


class Source:
    def __init__(self, agg: Aggregate) -> None:
        self.agg = agg

    def aggregate(self) -> Aggregate:
        return self.agg

    def status(self) -> dict[str, Any]:
        return STATUS


def _exposition(agg: Aggregate) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TurnoutCollector(Source(agg)))
    return generate_latest(registry).decode()


def test_usage_refusals_and_keys_sum_over_workers() -> None:
    agg = Aggregate()
    for _ in range(2):
        stats = WorkerStats()
        stats.usage("acme", 10, 200)
        stats.refusal(429, b"rate_limited")
        stats.refusal(404, b"no_route")
        stats.keyed_request(b"feature-x")
        agg.add_worker(stats.export())
    text = _exposition(agg)
    assert 'turnout_consumer_requests_total{consumer="acme"} 2.0' in text
    assert 'turnout_consumer_bytes_total{consumer="acme",direction="received"} 20.0' in text
    assert 'turnout_consumer_bytes_total{consumer="acme",direction="sent"} 400.0' in text
    assert 'turnout_refusals_total{reason="rate_limited",status="429"} 2.0' in text
    assert 'turnout_refusals_total{reason="no_route",status="404"} 2.0' in text
    assert 'turnout_sandbox_requests_total{key="feature-x"} 2.0' in text
    assert (
        'turnout_certificate_expiry_timestamp_seconds{gateway="default/gw",listener="https",'
        'source="Secret default/site"} 1.9e+09' in text
    )
    assert 'turnout_config_reloads_total{result="failure"} 1.0' in text


def test_consumer_labels_are_capped() -> None:
    stats = WorkerStats()
    for i in range(MAX_CONSUMERS + 5):
        stats.usage(f"user-{i}", 1, 1)
    assert len(stats.consumers) == MAX_CONSUMERS + 1
    assert stats.consumers[OTHER_CONSUMER][0] == 5


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_sampling_keeps_errors_and_the_drawn_share(tmp_path: Path) -> None:
    draws = iter([0.05, 0.5, 0.09, 0.95])
    log = open_access_log(str(tmp_path / "a.log"), ("status",), sample=0.1)
    assert log is not None
    log._rand = lambda: next(draws)  # the draws decide, not chance
    kept = [log.sampled() for _ in range(4)]
    assert kept == [True, False, True, False]
    everything = open_access_log(str(tmp_path / "b.log"), ("status",))
    assert everything is not None and everything.keep_all and everything.sampled()
    with pytest.raises(ValueError, match="between 0 and 1"):
        open_access_log(str(tmp_path / "c.log"), sample=1.5)


def test_reopen_follows_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = open_access_log(str(path), ("status",))
    assert log is not None
    log.record(
        (
            0.0,
            0.0,
            b"GET",
            b"/",
            b"h",
            200,
            0,
            0,
            b"null",
            b"null",
            b"null",
            b"",
            b"",
            b"",
            b"",
            None,
        )
    )
    log.tick()
    os.rename(path, tmp_path / "access.log.1")  # what logrotate does (no copytruncate)
    log.record(
        (
            0.0,
            0.0,
            b"GET",
            b"/",
            b"h",
            201,
            0,
            0,
            b"null",
            b"null",
            b"null",
            b"",
            b"",
            b"",
            b"",
            None,
        )
    )
    log.reopen()  # pending lines go to the old file, then the new one starts
    log.record(
        (
            0.0,
            0.0,
            b"GET",
            b"/",
            b"h",
            202,
            0,
            0,
            b"null",
            b"null",
            b"null",
            b"",
            b"",
            b"",
            b"",
            None,
        )
    )
    log.close()
    assert _lines(tmp_path / "access.log.1") == ['{"status":200}', '{"status":201}']
    assert _lines(path) == ['{"status":202}']


def test_reopen_is_a_no_op_for_pipes() -> None:
    read, write = os.pipe()
    writer = LogWriter(write)
    writer.reopen()
    writer.write(b"x\n", 1)
    writer.close()
    os.close(write)
    assert os.read(read, 10) == b"x\n"
    os.close(read)
