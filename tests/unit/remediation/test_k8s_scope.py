"""The Kubernetes actions held to their Runbook's ``spec.kubernetes`` before any call: a
namespace outside the allowed list and a node action without ``nodes: true`` are refused
(not retried) naming what was asked and what is allowed; the scope's validation names the
field; ``k8s_patch_resources`` validates its quantities. No API server here: a step that got
past the check would fail on the missing connection instead, with another message."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from turnout.config.model.remediation import BlastRadius, KubernetesScope, RunbookSpec
from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.control.remediation import k8s_actions as k8s
from turnout.control.remediation.actions import ActionContext, ActionError, lookup
from turnout.control.remediation.breaker import Breakers
from turnout.testing.clock import FakeClock


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    k8s.use_connection(None)


def ctx(scope: KubernetesScope | None = None) -> ActionContext:
    return ActionContext(
        key="run1-0",
        run_id="run1",
        namespace="shop",
        clock=FakeClock(),
        commit=None,  # type: ignore[arg-type]  # Kubernetes actions write no Turnout objects
        objects=dict,
        limits=BlastRadius(),
        breakers=Breakers(),
        timeout=5.0,
        **({"kubernetes": scope} if scope is not None else {}),
    )


def run(name: str, params: dict[str, Any], c: ActionContext) -> str:
    entry = lookup(name)
    return asyncio.run(entry.fn(entry.parse(params), c))


def refused(name: str, params: dict[str, Any], c: ActionContext) -> str:
    with pytest.raises(ActionError) as err:
        run(name, params, c)
    assert err.value.retry is False
    assert not c.breakers.by_name  # the breaker was never asked: no call was made
    return str(err.value)


WORKLOAD = [
    ("k8s_rollout_restart", {"deployment": "web"}),
    ("k8s_rollout_undo", {"deployment": "web"}),
    ("k8s_scale", {"deployment": "web", "replicas": 2}),
    ("k8s_patch_resources", {"deployment": "web", "container": "web", "limits": {"cpu": "1"}}),
    ("k8s_delete_pod", {"pod": "web-1"}),
]


@pytest.mark.parametrize(("name", "params"), WORKLOAD)
def test_by_default_only_the_runbooks_own_namespace(name: str, params: dict[str, Any]) -> None:
    msg = refused(name, {**params, "namespace": "kube-system"}, ctx())
    assert "namespace 'kube-system' is not allowed to this Runbook" in msg
    assert "allowed: shop; its own namespace only" in msg
    with pytest.raises(ActionError, match="no Kubernetes connection"):  # past the check
        run(name, params, ctx())


@pytest.mark.parametrize(("name", "params"), WORKLOAD)
def test_the_allowed_list_replaces_the_default(name: str, params: dict[str, Any]) -> None:
    scope = KubernetesScope.model_validate({"namespaces": ["web", "api"]})
    msg = refused(name, params, ctx(scope))  # its own namespace is no longer implied
    assert "namespace 'shop' is not allowed" in msg
    assert "allowed: web, api; spec.kubernetes.namespaces" in msg
    with pytest.raises(ActionError, match="no Kubernetes connection"):
        run(name, {**params, "namespace": "api"}, ctx(scope))


@pytest.mark.parametrize("name", ["k8s_cordon", "k8s_uncordon", "k8s_drain"])
def test_node_actions_need_an_explicit_opt_in(name: str) -> None:
    msg = refused(name, {"node": "n1"}, ctx())
    assert "node actions are not allowed to this Runbook" in msg
    assert "spec.kubernetes.nodes: true" in msg
    with pytest.raises(ActionError, match="no Kubernetes connection"):
        run(name, {"node": "n1"}, ctx(KubernetesScope.model_validate({"nodes": True})))


def test_the_scope_is_validated_naming_the_field() -> None:
    step = [{"name": "s", "action": "k8s_scale"}]
    spec = RunbookSpec.model_validate({"steps": step})
    assert spec.kubernetes == KubernetesScope() and not spec.kubernetes.nodes
    with pytest.raises(ValidationError) as bad:
        RunbookSpec.model_validate({"steps": step, "kubernetes": {"namespaces": ["Bad_NS"]}})
    assert bad.value.errors()[0]["loc"] == ("kubernetes", "namespaces", 0)
    assert "not a Kubernetes namespace name" in str(bad.value)
    with pytest.raises(ValidationError, match=r"kubernetes\.nodes"):
        RunbookSpec.model_validate({"steps": step, "kubernetes": {"nodes": "yes"}})
    with pytest.raises(ValidationError, match=r"kubernetes\.namespace\n"):
        RunbookSpec.model_validate({"steps": step, "kubernetes": {"namespace": ["a"]}})


RUNBOOK = """\
apiVersion: turnout.dev/v1alpha1
kind: Runbook
metadata:
  name: rb
spec:
  kubernetes:
    namespaces: [shop, Bad_NS]
  steps:
  - name: s
    action: k8s_scale
"""


def test_a_bad_namespace_in_a_file_names_file_line_and_field() -> None:
    resources, problems = parse_text(RUNBOOK, "rb.yaml")
    if not problems:
        _, problems = validate(resources)
    text = [str(p) for p in problems]
    assert any(
        t.startswith("rb.yaml:7:") and "spec.kubernetes.namespaces[1]: 'Bad_NS'" in t for t in text
    ), text


def test_quantities() -> None:
    assert k8s.quantity_value("500m") == Decimal("0.5")
    assert k8s.quantity_value("1Gi") == 1024**3
    assert k8s.quantity_value("2") == 2 and k8s.quantity_value("1e3") == 1000
    assert k8s.quantity_value("128M") == 128 * 1000**2
    for bad in ("-1", "1 Gi", "1GB", "", "1.2.3", "m"):
        with pytest.raises(ValueError, match="not a Kubernetes quantity"):
            k8s.quantity_value(bad)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"limits": {"memory": "1GB"}}, "params.limits.memory: Value error, '1GB' is not a"),
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}, "request 2 is above its limit"),
        ({}, "give requests and/or limits"),
        ({"limits": {"bad name!": "1"}}, "is not a resource name"),
        ({"limits": {"cpu": 1}}, "params.limits.cpu: Input should be a valid string"),
    ],
)
def test_patch_resources_params_are_validated(params: dict[str, Any], error: str) -> None:
    with pytest.raises(ActionError, match=error) as err:
        lookup("k8s_patch_resources").parse({"deployment": "web", "container": "web", **params})
    assert err.value.retry is False
