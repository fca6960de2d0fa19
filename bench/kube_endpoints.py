#!/usr/bin/env python3
"""Controller mode: EndpointSlice change -> every worker on the new endpoint.

    .venv/bin/python bench/kube_endpoints.py

Starts a real etcd + kube-apiserver (``scripts/build-k8s.sh`` binaries, as the tests do),
a ``turnout serve --kubernetes`` with 2 workers, a Service with one EndpointSlice and two
echo servers; then 20 times rewrites the slice to the other echo server and measures the
time from the write until 8 consecutive requests on fresh connections (spread over both
workers) all reach the new one. Prints the controller's start-up log first.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.kubernetes import gateway_crds
from tests.integration.kubernetes.conftest import KubeCluster
from turnout.samples.echo import EchoIdentity, start_echo
from turnout.testing import BackgroundLoop, TurnoutProcess, free_port
from turnout.testing.requests import get

NS = "m"
GW = "gateway.networking.k8s.io/v1"


def endpoint_slice(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1beta1",
        "kind": "EndpointSlice",
        "metadata": {"name": "s", "namespace": NS, "labels": {"kubernetes.io/service-name": "svc"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
    }


def arrange(k: KubeCluster, listen: int, first: int) -> None:
    gateway_crds.install(k)
    k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    k.apply(
        {
            "apiVersion": GW,
            "kind": "GatewayClass",
            "metadata": {"name": "turnout"},
            "spec": {"controllerName": "turnout.dev/gateway-controller"},
        }
    )
    listener = {"name": "http", "protocol": "HTTP", "port": listen}
    k.apply(
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "g", "namespace": NS},
            "spec": {
                "gatewayClassName": "turnout",
                "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                "listeners": [listener],
            },
        }
    )
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "svc", "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }
    )
    k.apply(endpoint_slice(first))
    rules = [{"backendRefs": [{"name": "svc", "port": 80}]}]
    k.apply(
        {
            "apiVersion": GW,
            "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": NS},
            "spec": {"parentRefs": [{"name": "g"}], "rules": rules},
        }
    )


def main() -> None:
    d = Path(tempfile.mkdtemp())
    k = KubeCluster(d)
    k.start()
    bg = BackgroundLoop()
    try:
        echoes = [
            bg.run(start_echo(identity=EchoIdentity(NS, f"e{i}", f"e{i}")))[1] for i in range(2)
        ]
        listen = free_port()
        arrange(k, listen, echoes[0].port)
        args = ["--kubernetes", "--kubeconfig", k.kubeconfig]
        proc = TurnoutProcess(d, workers=2, use_files=False, extra_args=args)
        proc.start(timeout=30)
        time.sleep(2)
        print("---- turnout stderr at start-up ----\n" + proc.stderr() + "----")
        took = []
        for i in range(20):
            target = echoes[(i + 1) % 2]
            t0 = time.monotonic()
            k.apply(endpoint_slice(target.port))
            pod = target.identity.pod
            while not all(get(listen, "/").json()["pod"] == pod for _ in range(8)):
                pass
            took.append(time.monotonic() - t0)
        proc.stop()
        took.sort()
        print(
            "EndpointSlice write -> 8 consecutive fresh-connection requests on the new "
            f"endpoint (2 workers), n={len(took)}: median "
            f"{statistics.median(took) * 1000:.0f} ms, min {took[0] * 1000:.0f} ms, "
            f"max {took[-1] * 1000:.0f} ms"
        )
    finally:
        k.stop()
        bg.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
