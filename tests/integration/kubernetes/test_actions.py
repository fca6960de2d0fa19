"""The Kubernetes runbook actions against a real API server (and the real deployment and
replicaset controllers), acting as a service account bound only to
``deploy/kubernetes/remediation``; every call through the ``kubernetes`` circuit breaker."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.kubernetes.conftest import REQUIRED, KubeCluster
from turnout.config.model.remediation import BlastRadius, KubernetesScope
from turnout.control.kube.connection import load_connection
from turnout.control.remediation import k8s_actions as k8s
from turnout.control.remediation.actions import ActionContext, ActionError, lookup
from turnout.control.remediation.breaker import Breakers
from turnout.core.clock import SYSTEM_CLOCK

ROOT = Path(__file__).resolve().parents[3]
NS = "rem"
SA = "system:serviceaccount:turnout:turnout"


def _as(kube: KubeCluster, user: str, path: Path, groups: list[str]) -> str:
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    config["users"][0]["user"]["as"] = user
    config["users"][0]["user"]["as-groups"] = groups
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def restricted(kube: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if REQUIRED:
            pytest.fail("kubectl is required under CI")
        pytest.skip("no kubectl (apt-get install kubernetes-client)")
    out = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            kube.kubeconfig,
            "apply",
            "-k",
            str(ROOT / "deploy" / "kubernetes" / "remediation"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    kube.start_controllers("deployment,replicaset")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    d = tmp_path_factory.mktemp("rem")
    yield _as(
        kube,
        SA,
        d / "sa.kubeconfig",
        ["system:serviceaccounts", "system:serviceaccounts:turnout", "system:authenticated"],
    )
    k8s.use_connection(None)


NODES = KubernetesScope.model_validate({"nodes": True})


def _ctx(
    key: str, breakers: Breakers | None = None, scope: KubernetesScope | None = None
) -> ActionContext:
    return ActionContext(
        key=key,
        run_id="run1",
        namespace=NS,
        clock=SYSTEM_CLOCK,
        commit=None,  # type: ignore[arg-type]  # Kubernetes actions write no Turnout objects
        objects=dict,
        limits=BlastRadius(),
        breakers=breakers or Breakers(),
        timeout=5.0,
        kubernetes=scope or KubernetesScope(),
    )


def _run(name: str, params: dict[str, Any], ctx: ActionContext) -> str:
    entry = lookup(name)
    return asyncio.run(entry.fn(entry.parse(params), ctx))


def _deployment(env: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "web:1", "env": [{"name": "V", "value": env}]}
                    ]
                },
            },
        },
    }


def _wait_revision(kube: KubeCluster, revision: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = kube.get(_deployment("")) or {}
        if (got["metadata"].get("annotations") or {}).get(k8s.REVISION) == revision:
            return got
        time.sleep(0.1)
    raise AssertionError(f"deployment never reached revision {revision}")


def test_all_actions_are_registered() -> None:
    lookup("notify_webhook")
    for name in (
        "k8s_rollout_restart",
        "k8s_scale",
        "k8s_rollout_undo",
        "k8s_delete_pod",
        "k8s_cordon",
        "k8s_uncordon",
        "k8s_drain",
        "k8s_patch_resources",
    ):
        assert lookup(name).name == name


def test_deployment_actions(kube: KubeCluster, restricted: str) -> None:
    kube.apply(_deployment("one"))
    _wait_revision(kube, "1")
    kube.apply(_deployment("two"))
    _wait_revision(kube, "2")
    k8s.use_connection(load_connection(restricted))

    assert "restarted" in _run("k8s_rollout_restart", {"deployment": "web"}, _ctx("run1-0"))
    again = _run("k8s_rollout_restart", {"deployment": "web"}, _ctx("run1-0"))
    assert "already restarted" in again  # a repeated step does not restart twice
    got = _wait_revision(kube, "3")
    assert got["spec"]["template"]["metadata"]["annotations"][k8s.RESTARTED_BY] == "run1-0"

    assert "to 3" in _run("k8s_scale", {"deployment": "web", "replicas": 3}, _ctx("run1-1"))
    assert (kube.get(_deployment("")) or {})["spec"]["replicas"] == 3

    assert "revision 2" in _run("k8s_rollout_undo", {"deployment": "web"}, _ctx("run1-2"))
    got = kube.get(_deployment("")) or {}
    assert got["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "V", "value": "two"}
    ]

    with pytest.raises(ActionError) as missing:
        _run("k8s_scale", {"deployment": "nope", "replicas": 1}, _ctx("run1-3"))
    assert missing.value.retry is False and "404" in str(missing.value)

    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
    params = {"deployment": "web", "container": "web", **resources}
    summary = _run("k8s_patch_resources", params, _ctx("run1-4"))
    assert "limits memory=128Mi" in summary and "requests cpu=100m, memory=64Mi" in summary
    got = kube.get(_deployment("")) or {}
    container = got["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == resources and container["image"] == "web:1"
    _run("k8s_patch_resources", params, _ctx("run1-4"))  # a repeated step changes nothing
    assert (kube.get(_deployment("")) or {})["metadata"]["generation"] == got["metadata"][
        "generation"
    ]
    with pytest.raises(ActionError) as no_container:
        _run("k8s_patch_resources", {**params, "container": "side"}, _ctx("run1-5"))
    assert no_container.value.retry is False and "no container 'side' (it has: web)" in str(
        no_container.value
    )


def test_a_namespace_the_runbook_is_not_allowed_is_refused_before_any_call(
    kube: KubeCluster, restricted: str
) -> None:
    """The service account may scale in every namespace (a ClusterRoleBinding), yet a
    Runbook in ``rem`` may not reach into ``default``: refused, and nothing changes."""
    other = {**_deployment("one"), "metadata": {"name": "web", "namespace": "default"}}
    kube.apply(other)
    k8s.use_connection(load_connection(restricted))
    breakers = Breakers()
    with pytest.raises(ActionError) as refused:
        _run(
            "k8s_scale",
            {"deployment": "web", "namespace": "default", "replicas": 0},
            _ctx("run5-0", breakers),
        )
    assert refused.value.retry is False
    assert "namespace 'default' is not allowed to this Runbook (allowed: rem" in str(refused.value)
    assert not breakers.by_name  # no call left the process
    assert (kube.get(other) or {})["spec"]["replicas"] == 1
    allowed = KubernetesScope.model_validate({"namespaces": ["rem", "default"]})
    _run(
        "k8s_scale",
        {"deployment": "web", "namespace": "default", "replicas": 0},
        _ctx("run5-1", scope=allowed),
    )
    assert (kube.get(other) or {})["spec"]["replicas"] == 0


def test_node_and_pod_actions(kube: KubeCluster, restricted: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p1", "namespace": NS},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
        }
    )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p2", "namespace": NS},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
        }
    )
    k8s.use_connection(load_connection(restricted))
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}

    _run("k8s_cordon", {"node": "n1"}, _ctx("run2-0", scope=NODES))
    assert (kube.get(node) or {})["spec"]["unschedulable"] is True
    _run("k8s_uncordon", {"node": "n1"}, _ctx("run2-1", scope=NODES))
    assert not (kube.get(node) or {})["spec"].get("unschedulable")

    assert "deleted" in _run("k8s_delete_pod", {"pod": "p2"}, _ctx("run2-2"))
    # no kubelet here: a deleted pod of a node stays Terminating until it is confirmed
    p2 = kube.get({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p2", "namespace": NS}})
    assert p2 is None or p2["metadata"].get("deletionTimestamp")

    summary = _run("k8s_drain", {"node": "n1"}, _ctx("run2-3", scope=NODES))
    assert "drained node n1" in summary
    assert (kube.get(node) or {})["spec"]["unschedulable"] is True
    p1 = kube.get({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": NS}})
    assert p1 is None or p1["metadata"].get("deletionTimestamp")


def test_outside_the_granted_rights_is_refused(
    kube: KubeCluster, restricted: str, tmp_path: Path
) -> None:
    nobody = _as(kube, "nobody", tmp_path / "nobody.kubeconfig", ["system:authenticated"])
    k8s.use_connection(load_connection(nobody))
    with pytest.raises(ActionError) as refused:
        _run("k8s_cordon", {"node": "n1"}, _ctx("run3-0", scope=NODES))
    assert refused.value.retry is False and "403" in str(refused.value)


def test_a_dead_api_server_opens_the_breaker(kube: KubeCluster, tmp_path: Path) -> None:
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"  # nothing listens
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    k8s.use_connection(load_connection(str(dead)))
    breakers = Breakers(failure_threshold=3, reset_timeout=60)
    errors = []
    for i in range(4):
        with pytest.raises(ActionError) as failed:
            _run("k8s_scale", {"deployment": "web", "replicas": 1}, _ctx(f"run4-{i}", breakers))
        errors.append(str(failed.value))
    assert "ConnectError" in errors[0]
    assert "circuit breaker 'kubernetes' is open" in errors[3]
    k8s.use_connection(None)
