"""The remediation kinds (turnout.dev): ``Runbook`` (alert matchers → ordered steps, with
approvals, cooldown, blast-radius limits and dry-run) and ``Mitigation`` (a leased,
self-expiring change to the data plane that a runbook step writes: on an HTTPRoute, shed
a share of its traffic with a fast 503, block client addresses or Consumers, shift weight
between its backends, tighten its rate limit, pin routing keys to the baseline; on a
Backend, eject endpoints or hold its circuit open).

String parameters of a step may name alert labels as ``{label}``; they are filled in when
a run is planned (``control.remediation.plan``)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictInt, StrictStr, model_validator

from turnout.config.model.base import Duration, ObjectMeta, ObjectName, Spec, Timestamp

RISKS = ("low", "medium", "high")


def _regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"{v!r} is not a valid regular expression: {exc}") from None
    return v


def _network(v: str) -> str:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise ValueError(f"{v!r} is not an IP address or CIDR network") from None
    return v


Regex = Annotated[StrictStr, AfterValidator(_regex)]
Network = Annotated[StrictStr, AfterValidator(_network)]
Text = Annotated[StrictStr, Field(max_length=1024)]


class AlertMatch(Spec):
    """Which alerts start a run: every listed label/annotation must equal (or, in the
    ``*Regex`` maps, fully match) the alert's. Firing alerts only, unless ``resolved``."""

    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    labels_regex: dict[StrictStr, Regex] = Field(default_factory=dict)
    annotations: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    annotations_regex: dict[StrictStr, Regex] = Field(default_factory=dict)
    resolved: StrictBool = False


class StepWhen(Spec):
    """A step runs only when the alert's labels match (equality)."""

    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class Approval(Spec):
    """A person must approve before the step runs; unanswered, the run expires."""

    roles: tuple[Literal["editor", "admin"], ...] = ("admin",)
    expiry: Duration = "15m"


Risk = Literal["low", "medium", "high", "never"]


class EnvironmentApproval(Spec):
    """The approval bar in one environment: steps of ``risk`` or above need one of
    ``roles`` (``never``: no step needs an approval there)."""

    risk: Risk = "low"
    roles: tuple[Literal["editor", "admin"], ...] = ("admin",)
    expiry: Duration = "15m"


class ApprovalPolicy(Spec):
    """Who approves the risky steps. The environment is the alert's label
    ``environmentLabel``; an environment listed in ``environments`` sets its own bar,
    roles and expiry, every other one uses the Runbook's ``approveRisk`` with ``roles``
    and ``expiry``. A step's own ``approval`` always applies."""

    roles: tuple[Literal["editor", "admin"], ...] = ("admin",)
    expiry: Duration = "15m"
    environment_label: Annotated[StrictStr, Field(min_length=1, max_length=253)] = "environment"
    environments: dict[StrictStr, EnvironmentApproval] = Field(default_factory=dict)


class RunbookStep(Spec):
    name: ObjectName
    action: Annotated[StrictStr, Field(min_length=1, max_length=63)]
    params: dict[StrictStr, Any] = Field(default_factory=dict)
    timeout: Duration = "30s"
    retries: Annotated[StrictInt, Field(ge=0, le=20)] = 0
    backoff: Duration = "1s"  # doubled after each failed attempt
    when: StepWhen | None = None
    risk: Literal["low", "medium", "high"] = "low"
    approval: Approval | None = None


class BlastRadius(Spec):
    """Refuse a step that would take the route's mitigations beyond these."""

    max_shed_percent: Annotated[StrictInt, Field(ge=0, le=100)] = 50
    max_blocked_clients: Annotated[StrictInt, Field(ge=0, le=100_000)] = 256
    max_ejected_endpoints: Annotated[StrictInt, Field(ge=0, le=10_000)] = 1  # per Backend
    max_weight_shift_percent: Annotated[StrictInt, Field(ge=0, le=100)] = 50  # per route


class InternalSignal(Spec):
    """A rule over the gateway's own counters for one HTTPRoute (in the Runbook's
    namespace), evaluated every second on the leader: when more than ``errorRateAbove``
    of the route's upstream answers within ``window`` are 5xx (at least ``minRequests``
    answers), the Runbook runs as for an alert named ``alertname``."""

    route: ObjectName
    error_rate_above: Annotated[float, Field(gt=0.0, lt=1.0)]
    window: Duration = "10s"
    min_requests: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 20
    alertname: Annotated[StrictStr, Field(min_length=1, max_length=253)] = "TurnoutRouteErrors"


class MetricCondition(Spec):
    """A condition over the gateway's own counters of an HTTPRoute (in the Runbook's
    namespace; ``route`` may name alert labels as ``{label}``), checked when a run
    starts: the share of 5xx among the route's upstream answers over the last
    ``window`` must be above ``errorRateAbove`` and/or below ``errorRateBelow``, among
    at least ``minRequests`` answers. Not met: the run is skipped, saying which."""

    route: Annotated[StrictStr, Field(min_length=1, max_length=253)]
    window: Duration = "1m"
    error_rate_above: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    error_rate_below: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    min_requests: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 1

    @model_validator(mode="after")
    def _bound(self) -> MetricCondition:
        if self.error_rate_above is None and self.error_rate_below is None:
            raise ValueError("a condition needs errorRateAbove or errorRateBelow")
        return self


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _namespace(v: str) -> str:
    if not _NAMESPACE.fullmatch(v):
        raise ValueError(
            f"{v!r} is not a Kubernetes namespace name: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return v


KubeNamespace = Annotated[StrictStr, AfterValidator(_namespace)]


class KubernetesScope(Spec):
    """Where the Runbook's Kubernetes actions (``k8s_*``) may act, checked before any call
    to the API server (least privilege on top of the identity's RBAC): the namespaces a
    step's ``namespace`` may name (empty: the Runbook's own namespace only), and whether
    the node actions (cordon, uncordon, drain: cluster-wide, a drain evicts pods of every
    namespace on the node) are allowed at all."""

    namespaces: tuple[KubeNamespace, ...] = Field(default=(), max_length=256)
    nodes: StrictBool = False

    def allows(self, namespace: str, own: str) -> bool:
        return namespace in self.namespaces if self.namespaces else namespace == own

    def allowed(self, own: str) -> tuple[str, ...]:
        return self.namespaces or (own,)


class RunbookSpec(Spec):
    description: Text | None = None
    match: AlertMatch = Field(default_factory=AlertMatch)
    signal: InternalSignal | None = None
    conditions: tuple[MetricCondition, ...] = Field(default=(), max_length=16)
    target: Annotated[StrictStr, Field(min_length=1, max_length=253)] = "{alertname}"
    cooldown: Duration = "5m"
    deadline: Duration = "10m"
    dry_run: StrictBool = False
    approve_risk: Literal["medium", "high", "never"] = "high"  # risk that needs approval
    approvals: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    limits: BlastRadius = Field(default_factory=BlastRadius)
    kubernetes: KubernetesScope = Field(default_factory=KubernetesScope)
    steps: tuple[RunbookStep, ...] = Field(min_length=1, max_length=32)


class RunbookObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["Runbook"]
    metadata: ObjectMeta
    spec: RunbookSpec
    status: dict[str, Any] | None = None


class MitigationTarget(Spec):
    group: Literal["gateway.networking.k8s.io", "turnout.dev"] = "gateway.networking.k8s.io"
    kind: Literal["HTTPRoute", "Backend"] = "HTTPRoute"
    name: ObjectName


class Shed(Spec):
    percent: Annotated[StrictInt, Field(ge=1, le=100)]


class WeightShift(Spec):
    """Move ``percent`` of the rule's total weight from one backendRef to another (at
    most the source's whole weight), in every rule of the route that has both."""

    from_backend: ObjectName
    to_backend: ObjectName
    percent: Annotated[StrictInt, Field(ge=1, le=100)]


Name = Annotated[StrictStr, Field(min_length=1, max_length=253)]


class MitigationSpec(Spec):
    """A data-plane change with a lease: the control plane deletes it at ``expiresAt``."""

    target_ref: MitigationTarget
    # on an HTTPRoute
    shed: Shed | None = None
    block_clients: tuple[Network, ...] = Field(default=(), max_length=100_000)
    block_consumers: tuple[Name, ...] = Field(default=(), max_length=100_000)
    shift_weight: WeightShift | None = None
    rate_limit_percent: Annotated[StrictInt, Field(ge=1, le=99)] | None = None
    pin_keys: tuple[Name, ...] = Field(default=(), max_length=1000)
    # on a Backend
    eject_endpoints: tuple[Name, ...] = Field(default=(), max_length=10_000)
    open_circuit: StrictBool = False
    expires_at: Timestamp
    reason: Text = ""
    run: StrictStr = ""

    @model_validator(mode="after")
    def _fits_target(self) -> MitigationSpec:
        backend = self.target_ref.kind == "Backend"
        route_set = bool(
            self.shed or self.block_clients or self.block_consumers or self.shift_weight
        ) or (self.rate_limit_percent is not None or bool(self.pin_keys))
        backend_set = bool(self.eject_endpoints) or self.open_circuit
        if backend and route_set:
            raise ValueError("a Mitigation of a Backend takes only ejectEndpoints and openCircuit")
        if not backend and backend_set:
            raise ValueError("ejectEndpoints and openCircuit need targetRef.kind Backend")
        return self


class MitigationObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["Mitigation"]
    metadata: ObjectMeta
    spec: MitigationSpec
    status: dict[str, Any] | None = None
