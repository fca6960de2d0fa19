"""Kubernetes actions for runbooks: rollout restart/undo, scale, patch resources, delete pod,
cordon/uncordon, drain.

Before any call, a step is held to its Runbook's ``spec.kubernetes`` (``ctx.kubernetes``):
the namespace it names must be one the Runbook allows (by default only its own), and the
node actions need ``nodes: true``. A refusal is not retried and fails the run naming the
namespace and what is allowed, like a blast-radius refusal (the run's timeline and a
warning in the log are its audit trail).

Each call to the API server goes through the ``kubernetes`` circuit breaker (a dead API
server fails a step at once with a clear reason instead of hanging every run) and is
bounded by the step timeout. The connection is the controller's own in
``serve --kubernetes`` (``use_connection``), else ``$KUBECONFIG`` / in-cluster. The
identity needs only the verbs in ``deploy/kubernetes/components/remediation``.

Idempotent on ``ctx.key`` (a restart may repeat a step): a rollout restart stamps
``turnout.dev/restarted-by: <key>`` on the pod template and does nothing when it is
already there; scale, cordon and uncordon set a value; deleting or evicting a pod that is
already gone succeeds. A 403 (RBAC) or 404 (no such object) is a refusal, not retried;
429 (a PodDisruptionBudget blocks an eviction) and 5xx are retried with the step's back-off.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, Field, StrictInt, StrictStr, model_validator

from turnout.control.kube.client import KubeAPIError, KubeClient, ResourceType
from turnout.control.kube.connection import KubeConfigError, KubeConnection, load_connection
from turnout.control.remediation.actions import ActionContext, ActionError, ActionParams, action
from turnout.control.remediation.breaker import BreakerOpen

BREAKER = "kubernetes"
RESTARTED_BY = "turnout.dev/restarted-by"
REVISION = "deployment.kubernetes.io/revision"
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment")
REPLICASETS = ResourceType("apps", "v1", "replicasets", "ReplicaSet")
PODS = ResourceType("", "v1", "pods", "Pod")
NODES = ResourceType("", "v1", "nodes", "Node", namespaced=False)
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"  # merges containers by name

_connection: KubeConnection | None = None


def use_connection(connection: KubeConnection | None) -> None:
    """The connection the actions use (``serve --kubernetes`` passes its own)."""
    global _connection
    _connection = connection


def _client() -> KubeClient:
    try:
        return KubeClient(_connection or load_connection())
    except KubeConfigError as exc:
        raise ActionError(f"no Kubernetes connection: {exc}", retry=False) from None


async def _call(ctx: ActionContext, what: str, make: Callable[[KubeClient], Awaitable[Any]]) -> Any:
    client = _client()
    try:
        return await ctx.breakers.get(BREAKER).call(lambda: make(client), ctx.timeout)
    except BreakerOpen as exc:
        raise ActionError(str(exc)) from None
    except KubeAPIError as exc:
        retry = exc.status == 429 or exc.status >= 500 or exc.status == 409
        raise ActionError(f"{what}: {exc.status} {exc.message}", retry=retry) from None
    except httpx.HTTPError as exc:
        raise ActionError(f"{what}: {type(exc).__name__}: {exc}") from None
    except TimeoutError:
        raise ActionError(f"{what}: timed out after {ctx.timeout:g}s") from None
    finally:
        await client.close()


def _namespace(ctx: ActionContext, asked: str | None, what: str) -> str:
    """The namespace a step acts in, refused unless the Runbook allows it."""
    ns = asked or ctx.namespace
    scope = ctx.kubernetes
    if not scope.allows(ns, ctx.namespace):
        allowed = ", ".join(scope.allowed(ctx.namespace))
        where = "spec.kubernetes.namespaces" if scope.namespaces else "its own namespace only"
        raise ActionError(
            f"{what}: namespace {ns!r} is not allowed to this Runbook "
            f"(allowed: {allowed}; {where})",
            retry=False,
        )
    return ns


def _nodes_allowed(ctx: ActionContext, what: str) -> None:
    if not ctx.kubernetes.nodes:
        raise ActionError(
            f"{what}: node actions are not allowed to this Runbook "
            "(set spec.kubernetes.nodes: true to allow cordon, uncordon and drain)",
            retry=False,
        )


class WorkloadParams(ActionParams):
    deployment: StrictStr
    namespace: StrictStr | None = None  # default: the Runbook's namespace


class ScaleParams(WorkloadParams):
    replicas: Annotated[StrictInt, Field(ge=0, le=1000)]


class PodParams(ActionParams):
    pod: StrictStr
    namespace: StrictStr | None = None


class NodeParams(ActionParams):
    node: StrictStr


# a Kubernetes quantity (as resource.Quantity parses it), never negative
_QUANTITY = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE]\d+)?")
_SUFFIX = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("", 0))},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
}
_RESOURCE = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?"
)


def quantity_value(v: str) -> Decimal:
    """The value of a quantity (``"500m"`` → 0.5, ``"1Gi"`` → 1073741824)."""
    m = _QUANTITY.fullmatch(v)
    if m is None:
        raise ValueError(f"{v!r} is not a Kubernetes quantity (e.g. 500m, 2, 256Mi, 1Gi, 1e3)")
    number, suffix = Decimal(m.group(1)), m.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def _quantity(v: str) -> str:
    quantity_value(v)
    return v


def _resource_name(v: str) -> str:
    if len(v) > 253 or not _RESOURCE.fullmatch(v):
        raise ValueError(f"{v!r} is not a resource name (cpu, memory, example.com/gpu)")
    return v


Quantity = Annotated[StrictStr, AfterValidator(_quantity)]
ResourceName = Annotated[StrictStr, AfterValidator(_resource_name)]


class ResourcesParams(WorkloadParams):
    container: StrictStr
    requests: dict[ResourceName, Quantity] = Field(default_factory=dict, max_length=16)
    limits: dict[ResourceName, Quantity] = Field(default_factory=dict, max_length=16)

    @model_validator(mode="after")
    def _sane(self) -> ResourcesParams:
        if not self.requests and not self.limits:
            raise ValueError("give requests and/or limits to set")
        for name, request in self.requests.items():
            limit = self.limits.get(name)
            if limit is not None and quantity_value(request) > quantity_value(limit):
                raise ValueError(f"the {name} request {request} is above its limit {limit}")
        return self


@action("k8s_rollout_restart", WorkloadParams)
async def rollout_restart(params: WorkloadParams, ctx: ActionContext) -> str:
    """Restart a Deployment's pods (as ``kubectl rollout restart``)."""
    ns = _namespace(ctx, params.namespace, f"restart deployment {params.deployment}")
    path = DEPLOYMENTS.path(ns, params.deployment)
    current = await _call(
        ctx, f"get deployment {ns}/{params.deployment}", lambda c: c.request("GET", path)
    )
    annotations = ((current.get("spec") or {}).get("template") or {}).get("metadata") or {}
    if (annotations.get("annotations") or {}).get(RESTARTED_BY) == ctx.key:
        return f"deployment {ns}/{params.deployment} already restarted by this step"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {RESTARTED_BY: ctx.key, "kubectl.kubernetes.io/restartedAt": now}
                }
            }
        }
    }
    await _call(
        ctx,
        f"restart deployment {ns}/{params.deployment}",
        lambda c: c.request("PATCH", path, patch, MERGE),
    )
    return f"restarted deployment {ns}/{params.deployment}"


@action("k8s_scale", ScaleParams)
async def scale(params: ScaleParams, ctx: ActionContext) -> str:
    """Set a Deployment's replica count (through its scale subresource)."""
    ns = _namespace(ctx, params.namespace, f"scale deployment {params.deployment}")
    path = DEPLOYMENTS.path(ns, params.deployment) + "/scale"
    await _call(
        ctx,
        f"scale deployment {ns}/{params.deployment}",
        lambda c: c.request("PATCH", path, {"spec": {"replicas": params.replicas}}, MERGE),
    )
    return f"scaled deployment {ns}/{params.deployment} to {params.replicas}"


@action("k8s_rollout_undo", WorkloadParams)
async def rollout_undo(params: WorkloadParams, ctx: ActionContext) -> str:
    """Roll a Deployment back to its previous revision (as ``kubectl rollout undo``)."""
    ns = _namespace(ctx, params.namespace, f"undo deployment {params.deployment}")
    path = DEPLOYMENTS.path(ns, params.deployment)
    what = f"undo deployment {ns}/{params.deployment}"
    dep = await _call(ctx, what, lambda c: c.request("GET", path))
    uid = (dep.get("metadata") or {}).get("uid")
    current = int(((dep.get("metadata") or {}).get("annotations") or {}).get(REVISION, 0))
    found = await _call(ctx, what, lambda c: c.request("GET", REPLICASETS.path(ns)))
    revisions: list[tuple[int, dict[str, Any]]] = []
    for rs in found.get("items") or []:
        meta = rs.get("metadata") or {}
        if any(o.get("uid") == uid for o in meta.get("ownerReferences") or []):
            revisions.append((int((meta.get("annotations") or {}).get(REVISION, 0)), rs))
    older = sorted((r for r in revisions if r[0] < current), key=lambda r: r[0])
    if not older:
        raise ActionError(f"{what}: no previous revision (current {current})", retry=False)
    revision, rs = older[-1]
    template = dict((rs.get("spec") or {}).get("template") or {})
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop("pod-template-hash", None)
    template["metadata"] = {**(template.get("metadata") or {}), "labels": labels}
    await _call(
        ctx, what, lambda c: c.request("PATCH", path, {"spec": {"template": template}}, MERGE)
    )
    return f"rolled deployment {ns}/{params.deployment} back to revision {revision}"


@action("k8s_patch_resources", ResourcesParams)
async def patch_resources(params: ResourcesParams, ctx: ActionContext) -> str:
    """Set a Deployment container's resource requests/limits (others are left as they are)."""
    what = f"patch resources of deployment {params.deployment}"
    ns = _namespace(ctx, params.namespace, what)
    what = f"patch resources of deployment {ns}/{params.deployment}"
    path = DEPLOYMENTS.path(ns, params.deployment)
    dep = await _call(ctx, what, lambda c: c.request("GET", path))
    containers = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
    names = [c.get("name") for c in containers.get("containers") or []]
    if params.container not in names:  # a strategic merge would add a new, invalid one
        raise ActionError(
            f"{what}: no container {params.container!r} (it has: {', '.join(map(str, names))})",
            retry=False,
        )
    resources: dict[str, Any] = {}
    if params.requests:
        resources["requests"] = dict(params.requests)
    if params.limits:
        resources["limits"] = dict(params.limits)
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": params.container, "resources": resources}]}
            }
        }
    }
    await _call(ctx, what, lambda c: c.request("PATCH", path, patch, STRATEGIC))
    shown = "; ".join(
        f"{kind} " + ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
        for kind, values in resources.items()
    )
    return f"set container {params.container} of deployment {ns}/{params.deployment}: {shown}"


@action("k8s_delete_pod", PodParams)
async def delete_pod(params: PodParams, ctx: ActionContext) -> str:
    """Delete one pod (its controller replaces it)."""
    ns = _namespace(ctx, params.namespace, f"delete pod {params.pod}")
    path = PODS.path(ns, params.pod)

    async def delete(c: KubeClient) -> str:
        try:
            await c.request("DELETE", path)
        except KubeAPIError as exc:
            if exc.status == 404:
                return "already gone"
            raise
        return "deleted"

    result = await _call(ctx, f"delete pod {ns}/{params.pod}", delete)
    return f"pod {ns}/{params.pod} {result}"


async def _set_unschedulable(ctx: ActionContext, node: str, value: bool) -> None:
    await _call(
        ctx,
        f"{'cordon' if value else 'uncordon'} node {node}",
        lambda c: c.request(
            "PATCH", NODES.path(None, node), {"spec": {"unschedulable": value}}, MERGE
        ),
    )


@action("k8s_cordon", NodeParams)
async def cordon(params: NodeParams, ctx: ActionContext) -> str:
    """Mark a node unschedulable."""
    _nodes_allowed(ctx, f"cordon node {params.node}")
    await _set_unschedulable(ctx, params.node, True)
    return f"cordoned node {params.node}"


@action("k8s_uncordon", NodeParams)
async def uncordon(params: NodeParams, ctx: ActionContext) -> str:
    """Mark a node schedulable again."""
    _nodes_allowed(ctx, f"uncordon node {params.node}")
    await _set_unschedulable(ctx, params.node, False)
    return f"uncordoned node {params.node}"


@action("k8s_drain", NodeParams)
async def drain(params: NodeParams, ctx: ActionContext) -> str:
    """Cordon a node and evict its pods (DaemonSet and mirror pods stay), PDBs respected."""
    _nodes_allowed(ctx, f"drain node {params.node}")
    await _set_unschedulable(ctx, params.node, True)
    found = await _call(
        ctx,
        f"list pods on {params.node}",
        lambda c: c.request(
            "GET", PODS.path(), params={"fieldSelector": f"spec.nodeName={params.node}"}
        ),
    )
    evicted = 0
    for pod in found.get("items") or []:
        meta = pod.get("metadata") or {}
        owners = meta.get("ownerReferences") or []
        if any(o.get("kind") == "DaemonSet" for o in owners):
            continue
        if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            continue
        ns, name = meta.get("namespace", "default"), meta["name"]
        body = {
            "apiVersion": "policy/v1beta1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns},
        }

        async def evict(c: KubeClient, ns: str = ns, name: str = name, body: Any = body) -> None:
            try:
                await c.request("POST", PODS.path(ns, name) + "/eviction", body)
            except KubeAPIError as exc:
                if exc.status != 404:  # already gone
                    raise

        await _call(ctx, f"evict pod {ns}/{name}", evict)
        evicted += 1
    return f"drained node {params.node}: {evicted} pod(s) evicted"
