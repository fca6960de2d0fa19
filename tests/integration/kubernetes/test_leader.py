"""Two ``turnout serve --kubernetes`` processes: one leader writes status; a forced
takeover (the leader is killed, so it cannot release the Lease) moves the writes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kubernetes import gateway_crds
from tests.integration.kubernetes.conftest import KubeCluster
from turnout.testing import TurnoutProcess

GW = "gateway.networking.k8s.io/v1"
CONTROLLER = "turnout.dev/lease-test"


def _class(name: str) -> dict[str, object]:
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": CONTROLLER},
    }


def _accepted(kube: KubeCluster, name: str) -> bool:
    got = kube.get(_class(name)) or {}
    conds = (got.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Accepted" and c["status"] == "True" for c in conds)


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


@pytest.fixture
def pair(kube: KubeCluster, tmp_path: Path) -> Iterator[list[TurnoutProcess]]:
    gateway_crds.install(kube)
    procs = []
    for name in ("one", "two"):
        d = tmp_path / name
        d.mkdir()
        procs.append(
            TurnoutProcess(
                d,
                use_files=False,
                env={"POD_NAME": name},
                extra_args=[
                    "--kubernetes",
                    "--kubeconfig",
                    kube.kubeconfig,
                    "--controller-name",
                    CONTROLLER,
                    "--lease-duration",
                    "3s",
                ],
            )
        )
    for proc in procs:
        proc.start(timeout=30)
    yield procs
    for proc in procs:
        proc.stop()


def _leader(procs: list[TurnoutProcess]) -> list[str]:
    return [p.env["POD_NAME"] for p in procs if "became leader" in p.stderr()]


def test_only_the_leader_writes_and_a_forced_takeover_moves_it(
    kube: KubeCluster, pair: list[TurnoutProcess]
) -> None:
    kube.apply(_class("lease-a"))
    _wait(lambda: _accepted(kube, "lease-a"), 15, "status from the leader")
    leaders = _leader(pair)
    assert len(leaders) == 1, leaders
    leader = next(p for p in pair if p.env["POD_NAME"] == leaders[0])
    standby = next(p for p in pair if p is not leader)
    assert leader.proc is not None
    os.kill(leader.proc.pid, signal.SIGKILL)  # no release: the standby must wait it out
    killed = time.monotonic()
    kube.apply(_class("lease-b"))
    _wait(lambda: "became leader" in standby.stderr(), 15, "the standby to take over")
    took = time.monotonic() - killed
    _wait(lambda: _accepted(kube, "lease-b"), 10, "status from the new leader")
    assert took >= 2.0  # not before the 3 s lease ran out (minus one retry of slack)
    lease = kube.get(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "turnout-turnout.dev-lease-test", "namespace": "default"},
        }
    )
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == standby.env["POD_NAME"]
    assert lease["spec"]["leaseTransitions"] >= 1


def test_a_leader_that_stops_normally_hands_over_at_once(
    kube: KubeCluster, pair: list[TurnoutProcess]
) -> None:
    _wait(lambda: len(_leader(pair)) == 1, 15, "a leader")
    leader = next(p for p in pair if p.env["POD_NAME"] == _leader(pair)[0])
    standby = next(p for p in pair if p is not leader)
    leader.stop()  # SIGTERM: releases the Lease on the way out
    stopped = time.monotonic()
    _wait(lambda: "became leader" in standby.stderr(), 15, "the standby to take over")
    assert time.monotonic() - stopped < 2.0  # well before the 3 s lease could run out
