"""The informer against a real API server: resume from a version, relist on 410 Gone."""

from __future__ import annotations

import asyncio
import contextlib

from tests.integration.kubernetes.conftest import KubeCluster
from turnout.control.kube.client import KubeClient, ResourceType
from turnout.control.kube.connection import load_connection
from turnout.control.kube.informer import Informer

CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap")


def _cm(i: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "churn", "namespace": "default"},
        "data": {"i": str(i)},
    }


def test_a_version_too_old_to_resume_from_relists(kube: KubeCluster) -> None:
    kube.apply(_cm(0))
    old = str((kube.get(_cm(0)) or {})["metadata"]["resourceVersion"])
    for i in range(1, 20):
        kube.apply(_cm(i))
    latest = int((kube.get(_cm(0)) or {})["metadata"]["resourceVersion"])
    kube.compact_etcd(latest)  # ConfigMaps skip the watch cache (conftest): old is gone now

    async def scenario() -> tuple[int, str]:
        client = KubeClient(load_connection(kube.kubeconfig))
        changes = asyncio.Event()
        informer = Informer(client, CONFIGMAPS, changes.set, backoff=(0.05, 0.2))
        informer.version = old  # as if it had listed long ago and was resuming now
        informer.synced.set()
        task = asyncio.ensure_future(informer.run())
        try:
            async with asyncio.timeout(20):
                while ("default", "churn") not in informer.objects:
                    await changes.wait()
                    changes.clear()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()
        return informer.relists, informer.objects[("default", "churn")]["data"]["i"]

    relists, value = asyncio.run(scenario())
    assert relists == 1
    assert value == "19"


def test_a_watch_resumes_after_the_server_ends_it(kube: KubeCluster) -> None:
    async def scenario() -> tuple[int, int, str]:
        client = KubeClient(load_connection(kube.kubeconfig))
        changes = asyncio.Event()
        informer = Informer(client, CONFIGMAPS, changes.set, backoff=(0.05, 0.2))
        await informer.list_once()
        task = asyncio.ensure_future(informer.run())
        try:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(kube.restart_apiserver)  # the watch connection drops
            await asyncio.to_thread(kube.apply, _cm(1000))
            async with asyncio.timeout(20):
                while informer.objects[("default", "churn")]["data"]["i"] != "1000":
                    changes.clear()
                    await changes.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()
        return (
            informer.relists,
            informer.resumes,
            informer.objects[("default", "churn")]["data"]["i"],
        )

    relists, resumes, value = asyncio.run(scenario())
    assert value == "1000"
    assert relists == 0 and resumes >= 1  # resumed from its version, not listed again
