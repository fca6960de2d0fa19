"""A real etcd + kube-apiserver v1.20.2 on loopback for the whole session.

The binaries come from ``scripts/build-k8s.sh`` (cached in ``~/.cache/k8s-bin/v1.20.2``,
or ``$K8S_BIN_DIR``). Without them the tests skip, saying why, except under CI (``CI`` or
``TURNOUT_REQUIRE_K8S`` set) where a missing binary is a failure: ``.ci/run`` builds them.

The API server runs with token authentication and RBAC. ``KubeCluster.token`` is a
``system:masters`` identity; ``KubeCluster.kubeconfig`` names it. Every process is started
here and stopped by its PID. ``restart_apiserver`` stops and restarts the API server on the
same port and certificate (etcd keeps the data), for tests of watch recovery.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

BIN = Path(os.environ.get("K8S_BIN_DIR", os.path.expanduser("~/.cache/k8s-bin/v1.20.2")))
REQUIRED = bool(os.environ.get("CI") or os.environ.get("TURNOUT_REQUIRE_K8S"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing() -> str:
    if not (BIN / "kube-apiserver").exists():
        return f"no kube-apiserver in {BIN} (run scripts/build-k8s.sh)"
    if shutil.which("etcd") is None:
        return "no etcd (apt-get install etcd-server)"
    if shutil.which("openssl") is None:
        return "no openssl"
    return ""


class KubeCluster:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.etcd_client, self.etcd_peer, self.api_port = _port(), _port(), _port()
        self.token = "t-" + os.urandom(8).hex()
        self.host = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = str(directory / "kubeconfig")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    # -- processes ----------------------------------------------------------------------

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def start(self) -> None:
        d = self.dir
        (d / "tokens.csv").write_text(f"{self.token},admin,admin-uid,system:masters\n")
        for args in (
            ["genrsa", "-out", str(d / "sa.key"), "2048"],
            ["rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub")],
        ):
            subprocess.run(["openssl", *args], check=True, capture_output=True)
        ec, ep = self.etcd_client, self.etcd_peer
        self._start(
            "etcd",
            [
                shutil.which("etcd") or "etcd",
                "--name=t",
                f"--data-dir={d / 'etcd'}",
                "--unsafe-no-fsync",
                f"--listen-client-urls=http://127.0.0.1:{ec}",
                f"--advertise-client-urls=http://127.0.0.1:{ec}",
                f"--listen-peer-urls=http://127.0.0.1:{ep}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ep}",
                f"--initial-cluster=t=http://127.0.0.1:{ep}",
            ],
        )
        self.start_apiserver()
        self.kubeconfig_for("admin", self.token, Path(self.kubeconfig))

    def start_apiserver(self) -> None:
        d = self.dir
        self._start(
            "kube-apiserver",
            [
                str(BIN / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                "--insecure-port=0",
                f"--cert-dir={d / 'certs'}",
                f"--token-auth-file={d / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                # ConfigMaps bypass the watch cache, so a test can compact etcd and see
                # a watch from an old resourceVersion answered 410 Gone
                "--watch-cache-sizes=configmaps#0",
            ],
        )
        self.wait_ready()

    def stop_apiserver(self) -> None:
        self._stop("kube-apiserver")

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(verify=False, timeout=2.0) as http:  # before the CA file exists
            while True:
                try:
                    if http.get(self.host + "/readyz", headers=headers).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                dead = [n for n, p in self.procs.items() if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    log = (self.dir / "kube-apiserver.log").read_text(errors="replace")
                    raise RuntimeError(f"apiserver not ready (exited: {dead}):\n{log[-3000:]}")
                time.sleep(0.3)

    def start_controllers(self, controllers: str) -> None:
        """The real kube-controller-manager (e.g. ``deployment,replicaset``), once."""
        if "kube-controller-manager" in self.procs:
            return
        self._start(
            "kube-controller-manager",
            [
                str(BIN / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--controllers={controllers}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={_port()}",
                "--port=0",
            ],
        )

    def compact_etcd(self, revision: int) -> None:
        """Compact etcd's history up to ``revision`` (etcd's v3 JSON gateway)."""
        resp = httpx.post(
            f"http://127.0.0.1:{self.etcd_client}/v3/kv/compaction",
            json={"revision": str(revision), "physical": True},
            timeout=10.0,
        )
        assert resp.status_code == 200, resp.text

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self._stop(name)
        for log in self._logs:
            log.close()

    # -- identities ---------------------------------------------------------------------

    def kubeconfig_for(self, user: str, token: str, path: Path) -> str:
        ca = self.dir / "certs" / "apiserver.crt"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f'clusters: [{{name: t, cluster: {{server: "{self.host}", '
            f'certificate-authority: "{ca}"}}}}]\n'
            f"users: [{{name: {user}, user: {{token: {token}}}}}]\n"
            f"contexts: [{{name: t, context: {{cluster: t, user: {user}}}}}]\n"
            "current-context: t\n"
        )
        return str(path)

    def client(self, token: str | None = None) -> httpx.Client:
        """A synchronous REST client (tests arrange objects with it)."""
        return httpx.Client(
            base_url=self.host,
            verify=ssl.create_default_context(cafile=str(self.dir / "certs" / "apiserver.crt")),
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=10.0,
        )

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace one object (server-side apply, field manager ``tests``)."""
        if obj["kind"] == "Service":  # 1.20's apply needs the list key the server defaults
            for port in obj["spec"].get("ports", []):
                port.setdefault("protocol", "TCP")
        with self.client() as http:
            resp = http.patch(
                object_path(obj),
                params={"fieldManager": "tests", "force": "true"},
                content=_json(obj),
                headers={"Content-Type": "application/apply-patch+yaml"},
            )
            assert resp.status_code in (200, 201), resp.text
            return dict(resp.json())

    def get(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        with self.client() as http:
            resp = http.get(object_path(obj))
            if resp.status_code == 404:
                return None
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

    def delete(self, obj: dict[str, Any]) -> None:
        with self.client() as http:
            resp = http.delete(object_path(obj))
            assert resp.status_code in (200, 202, 404), resp.text


def _json(obj: dict[str, Any]) -> str:
    import json

    return json.dumps(obj)


_PLURALS = {
    "Namespace": "namespaces",
    "Service": "services",
    "Secret": "secrets",
    "EndpointSlice": "endpointslices",
    "CustomResourceDefinition": "customresourcedefinitions",
    "GatewayClass": "gatewayclasses",
    "Gateway": "gateways",
    "HTTPRoute": "httproutes",
    "GRPCRoute": "grpcroutes",
    "TCPRoute": "tcproutes",
    "TLSRoute": "tlsroutes",
    "ReferenceGrant": "referencegrants",
    "Backend": "backends",
    "Lease": "leases",
    "ConfigMap": "configmaps",
    "Deployment": "deployments",
    "Pod": "pods",
    "Node": "nodes",
    "ServiceAccount": "serviceaccounts",
}
_CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "GatewayClass", "Node"}


def object_path(obj: dict[str, Any]) -> str:
    api_version = obj["apiVersion"]
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    kind = obj["kind"]
    meta = obj["metadata"]
    plural = _PLURALS[kind]
    if kind in _CLUSTER_SCOPED:
        return f"{prefix}/{plural}/{meta['name']}"
    return f"{prefix}/namespaces/{meta.get('namespace', 'default')}/{plural}/{meta['name']}"


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeCluster]:
    missing = _missing()
    if missing:
        if REQUIRED:
            pytest.fail(f"Kubernetes tests required under CI: {missing}")
        pytest.skip(missing)
    cluster = KubeCluster(Path(tempfile.mkdtemp(prefix="turnout-kube-")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.dir, ignore_errors=True)
