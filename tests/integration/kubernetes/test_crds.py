"""``turnout crds`` installs into a real API server, which then refuses invalid objects."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.integration.kubernetes import gateway_crds
from tests.integration.kubernetes.conftest import KubeCluster

BACKENDS = "/apis/turnout.dev/v1alpha1/namespaces/default/backends"


def _crds() -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "turnout", "crds", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return list(json.loads(out)["items"])


def _backend(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def test_every_crd_installs_and_invalid_objects_are_refused(kube: KubeCluster) -> None:
    crds = _crds()
    assert len(crds) >= 9
    gateway_crds.install(kube, crds)  # the server refuses a non-structural schema (422)
    with kube.client() as http:
        ok = http.post(
            BACKENDS,
            json=_backend(
                "orders",
                {
                    "endpoints": [{"address": "10.0.0.1:8080", "weight": 2}],
                    "loadBalancer": {"type": "round_robin"},
                },
            ),
        )
        assert ok.status_code == 201, ok.text
        wrong_type = http.post(BACKENDS, json=_backend("bad1", {"endpoints": [{"address": 5}]}))
        assert wrong_type.status_code == 422, wrong_type.text
        assert "spec.endpoints" in wrong_type.json()["message"]
        missing = http.post(BACKENDS, json=_backend("bad2", {"endpoints": [{"weight": 1}]}))
        assert missing.status_code == 422, missing.text
        out_of_range = http.post(
            BACKENDS, json=_backend("bad3", {"endpoints": [{"address": "a:1", "weight": -1}]})
        )
        assert out_of_range.status_code == 422, out_of_range.text
        bad_enum = http.post(BACKENDS, json=_backend("bad4", {"appProtocol": "smtp"}))
        assert bad_enum.status_code == 422, bad_enum.text
        # the status subresource: a status write does not touch the spec, and back
        status = {"conditions": [{"type": "Accepted", "status": "True"}]}
        patched = http.patch(
            f"{BACKENDS}/orders/status",
            content=json.dumps({"status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert patched.status_code == 200, patched.text
        table = http.get(
            f"{BACKENDS}/orders",
            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        ).json()
        columns = [c["name"] for c in table["columnDefinitions"]]
        assert "Accepted" in columns
        assert table["rows"][0]["cells"][columns.index("Accepted")] == "True"
