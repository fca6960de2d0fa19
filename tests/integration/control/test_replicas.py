"""Two ``turnout serve`` replicas on one PostgreSQL database: a change through either is
served by both; one of them leads; PostgreSQL stopping and starting under traffic leaves
the data planes serving, makes writes fail fast with 503, and both resync afterwards."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import EchoFactory
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to


def _pod(port: int) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body)["pod"] if resp.status == 200 else ""
    finally:
        conn.close()


def _eventually(check: Callable[[], bool], what: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


Replicas = tuple[TurnoutProcess, TurnoutProcess, int, int]


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[Replicas]:
    procs = []
    ports = []
    shared = tmp_path / "data"  # one data dir: the bootstrap token is written once
    for i in range(2):
        conf = tmp_path / f"replica{i}"
        conf.mkdir()
        port = free_port()
        (conf / "gateway.yaml").write_text(dump(gateway(port=port)))
        proc = TurnoutProcess(conf, workers=1, data_dir=shared, store=pg_url)
        procs.append(proc.start())
        ports.append(port)
    try:
        yield procs[0], procs[1], ports[0], ports[1]
    finally:
        for proc in procs:
            proc.stop()


def test_a_change_through_either_replica_is_served_by_both(
    replicas: Replicas, echo: EchoFactory
) -> None:
    a, b, port_a, port_b = replicas
    one, two = echo("one-0"), echo("two-0")
    objs = {"manifests": [backend("shop", one.port), route("r", [to("shop")])]}
    code, body = a.api("POST", "/api/v1/apply", objs)
    assert code == 200, body
    _eventually(lambda: _pod(port_a) == (200, "one-0"), "replica A to serve", 5)
    took = _eventually(lambda: _pod(port_b) == (200, "one-0"), "replica B to serve", 5)
    print(f"propagation A -> B: {took * 1000:.0f} ms")
    # And the other way round, with the token replica A bootstrapped.
    code, body = b.api("POST", "/api/v1/apply", {"manifests": [backend("shop", two.port)]})
    assert code == 200, body
    took = _eventually(lambda: _pod(port_a) == (200, "two-0"), "replica A to follow B", 5)
    print(f"propagation B -> A: {took * 1000:.0f} ms")
    assert _pod(port_b) == (200, "two-0")
    # Both list the same revisions.
    assert a.api("GET", "/api/v1/revisions")[1] == b.api("GET", "/api/v1/revisions")[1]
    # Exactly one replica leads the reconcilers.
    leaders = [p.api("GET", "/api/v1/status")[1]["leader"] for p in (a, b)]
    assert sorted(leaders) == [False, True]


def _pg(action: str) -> None:
    cluster = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.slow
def test_postgresql_stop_and_start_under_traffic(replicas: Replicas, echo: EchoFactory) -> None:
    a, b, port_a, port_b = replicas
    one, two = echo("one-0"), echo("two-0")
    objs = {"manifests": [backend("shop", one.port), route("r", [to("shop")])]}
    assert a.api("POST", "/api/v1/apply", objs)[0] == 200
    _eventually(lambda: _pod(port_b) == (200, "one-0"), "replica B to serve", 5)

    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            for port in (port_a, port_b):
                try:
                    code, _ = _pod(port)
                except OSError as exc:
                    failures.append(f"{port}: {exc}")
                    continue
                if code != 200:
                    failures.append(f"{port}: {code}")
                served[0] += 1

    load = threading.Thread(target=traffic, daemon=True)
    load.start()
    try:
        _pg("stop")
        try:
            time.sleep(0.5)
            started = time.monotonic()
            code, body = a.api("POST", "/api/v1/apply", {"manifests": [backend("shop", two.port)]})
            took = time.monotonic() - started
            assert code == 503, body
            assert body["reason"] == "StoreUnavailable"
            assert took < 5.0, f"a write took {took:.1f}s to fail"
            print(f"write with PostgreSQL down failed in {took * 1000:.0f} ms")
            # Reads are served from memory.
            code, body = b.api("GET", "/api/v1/namespaces/default/backends/shop")
            assert code == 200, body
            time.sleep(1.0)
        finally:
            _pg("start")
        # Writes work again (the pool reconnects) and both replicas converge.
        _eventually(
            lambda: (
                a.api("POST", "/api/v1/apply", {"manifests": [backend("shop", two.port)]})[0] == 200
            ),
            "writes to succeed after PostgreSQL returned",
            20,
        )
        took = _eventually(lambda: _pod(port_b) == (200, "two-0"), "replica B to resync", 15)
        print(f"replica B resynced {took * 1000:.0f} ms after the first write")
    finally:
        stop.set()
        load.join(10)
    assert served[0] > 50
    assert failures == [], failures[:5]
    # Nothing half-written: revisions are gap-free and the objects match the latest one.
    revs = a.api("GET", "/api/v1/revisions")[1]["items"]
    numbers = [r["revision"] for r in revs]
    assert numbers == list(range(len(numbers), 0, -1)), numbers
    latest = a.api("GET", f"/api/v1/revisions/{numbers[0]}")[1]["objects"]
    endpoints = {
        o["metadata"]["name"]: o["spec"].get("endpoints") for o in latest if o["kind"] == "Backend"
    }
    assert endpoints == {"shop": [{"address": f"127.0.0.1:{two.port}"}]}
