"""Minimal CRDs for the Gateway API kinds the tests use.

The official CRD files are not on these machines; these have the same names, groups,
versions and scope, a structural schema that preserves unknown fields, and the status
subresource — all the controller relies on. Users install the official ones.
"""

from __future__ import annotations

import time
from typing import Any

from tests.integration.kubernetes.conftest import KubeCluster

GROUP = "gateway.networking.k8s.io"
# kind, plural, versions (the first is the storage version), namespaced
KINDS = [
    ("GatewayClass", "gatewayclasses", ["v1", "v1beta1"], False),
    ("Gateway", "gateways", ["v1", "v1beta1"], True),
    ("HTTPRoute", "httproutes", ["v1", "v1beta1"], True),
    ("GRPCRoute", "grpcroutes", ["v1"], True),
    ("TCPRoute", "tcproutes", ["v1alpha2"], True),
    ("TLSRoute", "tlsroutes", ["v1alpha2"], True),
    ("ReferenceGrant", "referencegrants", ["v1beta1"], True),
]
_OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def crd(kind: str, plural: str, versions: list[str], namespaced: bool) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            # *.k8s.io groups are protected; the official CRDs carry the same annotation
            "annotations": {
                "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"
            },
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "plural": plural,
                "listKind": f"{kind}List",
                "singular": kind.lower(),
            },
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": i == 0,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": _OPEN, "status": _OPEN},
                        }
                    },
                }
                for i, v in enumerate(versions)
            ],
        },
    }


def install(kube: KubeCluster, crds: list[dict[str, Any]] | None = None) -> None:
    """Create the CRDs (idempotent) and wait until each is Established."""
    crds = crds if crds is not None else [crd(*k) for k in KINDS]
    for obj in crds:
        kube.apply(obj)
    deadline = time.monotonic() + 30
    for obj in crds:
        while True:
            got = kube.get(obj) or {}
            conds = (got.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                break
            assert time.monotonic() < deadline, f"{obj['metadata']['name']} not established"
            time.sleep(0.1)
    time.sleep(0.5)  # discovery catches up just after Established
