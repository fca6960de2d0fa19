"""Lease leader election against a real API server: conflicts, expiry, forced takeover."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.kubernetes.conftest import KubeCluster
from turnout.control.kube.client import KubeAPIError, KubeClient
from turnout.control.kube.connection import load_connection
from turnout.control.kube.lease import LeaseElector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_leader_and_a_takeover_after_the_lease_expires(kube: KubeCluster) -> None:
    async def scenario() -> dict[str, Any]:
        client = KubeClient(load_connection(kube.kubeconfig))
        ca, cb = Clock(), Clock()
        a = LeaseElector(client, "default", "a", name="t-lease", duration=10, clock=ca)
        b = LeaseElector(client, "default", "b", name="t-lease", duration=10, clock=cb)
        try:
            got = {"a1": await a.try_once(), "b1": await b.try_once()}
            ca.now += 5
            cb.now += 5
            got["a2"] = await a.try_once()  # renews: b sees the record change
            got["b2"] = await b.try_once()
            cb.now += 9.9  # under the duration since b saw a renew
            got["b3"] = await b.try_once()
            cb.now += 0.2  # a went silent for a whole duration: forced takeover
            got["b4"] = await b.try_once()
            got["a3"] = await a.try_once()  # a sees b hold it and does not take it back
            got["lease"] = await client.request(
                "GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/t-lease"
            )
        finally:
            await client.close()
        return got

    got = asyncio.run(scenario())
    assert (got["a1"], got["b1"], got["a2"], got["b2"], got["b3"]) == (
        True,
        False,
        True,
        False,
        False,
    )
    assert got["b4"] is True and got["a3"] is False
    spec = got["lease"]["spec"]
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    assert spec["renewTime"].endswith("Z") and "." in spec["renewTime"]  # MicroTime


def test_a_stale_update_loses_with_409(kube: KubeCluster) -> None:
    async def scenario() -> int:
        client = KubeClient(load_connection(kube.kubeconfig))
        path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/t-409"
        try:
            a = LeaseElector(client, "default", "a", name="t-409")
            await a.try_once()
            first = await client.request("GET", path)
            await a.try_once()  # renews: the copy read above is now stale
            first["spec"]["holderIdentity"] = "intruder"
            try:
                await client.request("PUT", path, first)
            except KubeAPIError as exc:
                return exc.status
            return 200
        finally:
            await client.close()

    assert asyncio.run(scenario()) == 409
