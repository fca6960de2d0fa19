"""``deploy/kubernetes``: applied with ``kubectl apply -k`` to a real API server; the RBAC
is checked to be sufficient (a controller running as the service account serves and
writes status) and no broader (requests outside it are refused)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.kubernetes import gateway_crds
from tests.integration.kubernetes.conftest import REQUIRED, KubeCluster
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.requests import get

ROOT = Path(__file__).resolve().parents[3]
OVERLAY = ROOT / "deploy" / "kubernetes" / "overlays" / "production"
SA = "system:serviceaccount:turnout:turnout"
GW = "gateway.networking.k8s.io/v1"


@pytest.fixture(scope="module")
def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if REQUIRED:
            pytest.fail("kubectl is required under CI (apt-get install kubernetes-client)")
        pytest.skip("no kubectl (apt-get install kubernetes-client)")
    return found


def _run(kubectl: str, kube: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl, "--kubeconfig", kube.kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def applied(kubectl: str, kube: KubeCluster) -> list[dict[str, Any]]:
    gateway_crds.install(kube)
    # as docs/kubernetes.md says: `turnout crds | kubectl apply -f -`
    crds = subprocess.run(
        [sys.executable, "-m", "turnout", "crds"], capture_output=True, text=True, check=True
    ).stdout
    out = subprocess.run(
        [kubectl, "--kubeconfig", kube.kubeconfig, "apply", "-f", "-"],
        input=crds,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    out = _run(kubectl, kube, "apply", "-k", str(OVERLAY))
    assert out.returncode == 0, out.stderr
    built = _run(kubectl, kube, "kustomize", str(OVERLAY))
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


def _can(kubectl: str, kube: KubeCluster, *args: str) -> bool:
    out = _run(kubectl, kube, "auth", "can-i", f"--as={SA}", *args)
    assert out.stdout.strip() in ("yes", "no"), out.stderr
    return out.stdout.strip() == "yes"


def test_everything_is_created(
    kubectl: str, kube: KubeCluster, applied: list[dict[str, Any]]
) -> None:
    kinds = sorted(d["kind"] for d in applied)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "Service",
            "GatewayClass",
        ]
    )
    dep = _run(kubectl, kube, "-n", "turnout", "get", "deployment", "turnout", "-o", "json")
    assert dep.returncode == 0 and '"replicas": 3' in dep.stdout


def test_pod_spec_meets_the_restricted_pod_security_standard(applied: list[dict[str, Any]]) -> None:
    # Kubernetes 1.20 has no PodSecurity admission, so the rules are checked here.
    ns = next(d for d in applied if d["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = next(d for d in applied if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for vol in pod["volumes"]:
        assert set(vol) - {"name"} <= {
            "emptyDir",
            "configMap",
            "secret",
            "projected",
            "persistentVolumeClaim",
            "downwardAPI",
            "ephemeral",
        }
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc["capabilities"].get("add")
        assert not sc.get("privileged")
        assert all(p["containerPort"] >= 1024 and "hostPort" not in p for p in c["ports"])
        assert c["readinessProbe"] and c["livenessProbe"]


@pytest.mark.parametrize(
    "args",
    [
        ("list", "httproutes.gateway.networking.k8s.io", "--all-namespaces"),
        ("watch", "gateways.gateway.networking.k8s.io", "--all-namespaces"),
        ("patch", "httproutes.gateway.networking.k8s.io", "--subresource=status", "-n", "x"),
        ("list", "endpointslices.discovery.k8s.io", "--all-namespaces"),
        ("watch", "secrets", "--all-namespaces"),
        ("list", "backends.turnout.dev", "--all-namespaces"),
        ("patch", "backends.turnout.dev", "--subresource=status", "-n", "x"),
        ("update", "leases/turnout-turnout.dev-gateway-controller", "-n", "turnout"),
        ("create", "leases", "-n", "turnout"),
    ],
)
def test_rbac_allows_what_the_controller_does(
    kubectl: str, kube: KubeCluster, applied: list[dict[str, Any]], args: tuple[str, ...]
) -> None:
    assert _can(kubectl, kube, *args)


@pytest.mark.parametrize(
    "args",
    [
        ("create", "secrets", "-n", "default"),
        ("get", "secrets/any", "-n", "default"),  # list/watch only: no reads by name
        ("patch", "httproutes.gateway.networking.k8s.io", "-n", "x"),  # spec: never
        ("delete", "gateways.gateway.networking.k8s.io", "-n", "x"),
        ("create", "pods", "-n", "turnout"),
        ("update", "leases/other", "-n", "turnout"),
        ("create", "leases", "-n", "default"),
        ("list", "configmaps", "--all-namespaces"),
        ("patch", "backends.turnout.dev", "-n", "x"),
    ],
)
def test_rbac_refuses_everything_else(
    kubectl: str, kube: KubeCluster, applied: list[dict[str, Any]], args: tuple[str, ...]
) -> None:
    assert not _can(kubectl, kube, *args)


def test_a_controller_running_as_the_service_account_serves_and_writes_status(
    kube: KubeCluster, applied: list[dict[str, Any]], tmp_path: Path, bg: Any
) -> None:
    from turnout.samples.echo import EchoIdentity, start_echo

    server, echo = bg.run(start_echo(identity=EchoIdentity("turnout", "rbac", "rbac")))
    port = free_port()
    ns = "rbac-app"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }
    )
    kube.apply(
        {
            "apiVersion": "discovery.k8s.io/v1beta1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "app-1",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": "app"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": echo.port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        }
    )
    kube.apply(
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": ns},
            "spec": {
                "gatewayClassName": "turnout",
                "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                "listeners": [{"name": "http", "protocol": "HTTP", "port": port}],
            },
        }
    )
    route = {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "rules": [{"backendRefs": [{"name": "app", "port": 80}]}],
        },
    }
    kube.apply(route)
    # a kubeconfig that acts as the service account (the admin token may impersonate)
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    config["users"][0]["user"]["as"] = SA
    config["users"][0]["user"]["as-groups"] = [
        "system:serviceaccounts",
        "system:serviceaccounts:turnout",
        "system:authenticated",
    ]
    config["contexts"][0]["context"]["namespace"] = "turnout"
    as_sa = tmp_path / "as-sa.kubeconfig"
    as_sa.write_text(yaml.safe_dump(config))
    proc = TurnoutProcess(
        tmp_path, use_files=False, extra_args=["--kubernetes", "--kubeconfig", str(as_sa)]
    )
    try:
        proc.start(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            got = kube.get(route) or {}
            parents = (got.get("status") or {}).get("parents") or []
            if parents and get(port, "/").status == 200:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no status or no 200:\n{proc.stderr()}")
        assert get(port, "/").json()["pod"] == "rbac"
        assert "forbidden" not in proc.stderr().lower(), proc.stderr()
    finally:
        proc.stop()
        bg.call(server.close)
