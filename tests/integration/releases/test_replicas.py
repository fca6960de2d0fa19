"""Two replicas on one PostgreSQL: the leader judges a canary from the counters of the
replica that serves the traffic (published through the store), and acts once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EchoFactory
from tests.integration.control.conftest import pg_url  # noqa: F401 - a fixture
from tests.integration.releases.helpers import Users, apply, release, state
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[list[tuple[TurnoutProcess, int]]]:  # noqa: F811
    out = []
    shared = tmp_path / "data"
    try:
        for i in range(2):
            conf = tmp_path / f"replica{i}"
            conf.mkdir()
            port = free_port()
            (conf / "gateway.yaml").write_text(dump(gateway(port=port)))
            proc = TurnoutProcess(conf, workers=1, data_dir=shared, store=pg_url)
            out.append((proc.start(), port))
        yield out
    finally:
        for proc, _ in out:
            proc.stop()


def test_the_leader_aborts_on_a_follower_replicas_traffic_once(
    replicas: list[tuple[TurnoutProcess, int]], echo: EchoFactory
) -> None:
    stable, candidate = echo("orders-v1"), echo("orders-v2")
    candidate.force_status = 503
    (a, _), (b, _) = replicas
    leader = [p.api("GET", "/api/v1/status")[1]["leader"] for p, _ in replicas]
    assert sorted(leader) == [False, True]
    follower, port = replicas[leader.index(False)]
    apply(
        a,
        backend("orders", stable.port),
        backend("orders-v2", candidate.port),
        route("shop", [to("orders")]),
        release(
            "orders-v2",
            "orders",
            "orders-v2",
            strategy={"canary": {"steps": [{"setWeight": 30}, {"analysis": {"duration": "60s"}}]}},
            analysis={"minSamples": 20},
        ),
    )
    users = Users(port)  # all traffic through the follower
    deadline = time.monotonic() + 30
    found = state(follower, "orders-v2")
    while found["phase"] != "Degraded":
        assert time.monotonic() < deadline, found
        for _ in range(20):
            users.one()
        found = state(follower, "orders-v2")
    print(f"\nfailed user requests before the abort (via the follower): {users.failed}")
    # the abort reached the follower's data plane
    after = Users(port)
    deadline = time.monotonic() + 5
    while True:
        after.one()
        if after.pods["orders-v1"] >= 50 and not after.failed:
            break
        if after.failed:
            after = Users(port)
        assert time.monotonic() < deadline
    # acted once: one revision per transition (start, degraded), none doubled
    _, revisions = b.api("GET", "/api/v1/revisions?limit=50")
    mine = [r for r in revisions["items"] if r["actor"] == "system:release"]
    assert len(mine) == 2, mine
