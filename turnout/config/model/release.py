"""The ``Release`` kind (turnout.dev): a canary, blue-green or A/B rollout of a Backend.

``spec.backend`` names the released Backend: the *stable* version, as routes already
reference it. ``spec.candidate`` is the new version: another Backend, or a list of
endpoints served with the stable Backend's policies. The strategy (exactly one of
``canary``, ``blueGreen``, ``abTest``) says how traffic moves; ``split`` how a request is
assigned to a version (sticky by a gateway-set cookie by default); ``analysis`` how the
gateway's own per-request data judges the candidate. The reconciler keeps the live state
in ``status`` and projects the traffic part into an annotation (see
``turnout.control.releases``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from turnout.config.model.backend import EndpointSpec
from turnout.config.model.base import (
    Duration,
    HeaderName,
    HeaderValue,
    ObjectMeta,
    ObjectName,
    Percent,
    Spec,
    Timestamp,
)
from turnout.config.model.environment import Cron, TimeZone
from turnout.config.model.sandbox import RoutingKey

# The annotation holding the release's state (JSON, written by the reconciler and the
# release commands); the snapshot builder compiles its "phase" and "weight".
STATE_ANNOTATION = "turnout.dev/release-state"
DEFAULT_COOKIE = "turnout-release"


class CandidateSpec(Spec):
    """The new version: a Backend, or endpoints under the stable Backend's policies."""

    backend: ObjectName | None = None
    endpoints: tuple[EndpointSpec, ...] = Field(default=(), max_length=256)

    @model_validator(mode="after")
    def _one(self) -> CandidateSpec:
        if (self.backend is None) == (not self.endpoints):
            raise ValueError("give exactly one of 'backend' and 'endpoints'")
        return self


class SplitSpec(Spec):
    """What a request's version is chosen by. ``cookie`` (default): a cookie the gateway
    sets when absent, so a user stays on one version; ``header``: a header's value;
    ``clientAddress``; ``consumer``: the Consumer a SecurityPolicy identified (API key,
    Basic user or JWT subject); ``jwtClaim``: a claim of the validated JWT (``name``, a
    dotted path for nested claims); ``random``: per request. A request without its
    header, Consumer or claim is split at random. With a key, users already on the
    candidate stay there while the weight grows. ``pinSessionCookie``: a request without
    the release cookie that carries this (session) cookie is pinned to stable."""

    by: Literal["cookie", "header", "clientAddress", "random", "consumer", "jwtClaim"] = "cookie"
    name: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    pin_session_cookie: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None

    @model_validator(mode="after")
    def _named(self) -> SplitSpec:
        if self.by == "header" and self.name is None:
            raise ValueError("'by: header' needs 'name' (the header)")
        if self.by == "jwtClaim" and self.name is None:
            raise ValueError("'by: jwtClaim' needs 'name' (the claim, or a dotted path)")
        return self


class PauseSpec(Spec):
    """Wait ``duration``; without one, until promoted (or resumed)."""

    duration: Duration | None = None


class AnalysisStepSpec(Spec):
    """Judge the candidate for at most ``duration`` (a verdict may come earlier)."""

    duration: Duration = "60s"


class CanaryStep(Spec):
    set_weight: Percent | None = None
    pause: PauseSpec | None = None
    analysis: AnalysisStepSpec | None = None

    @model_validator(mode="after")
    def _one(self) -> CanaryStep:
        given = [f for f in ("set_weight", "pause", "analysis") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("a step is exactly one of 'setWeight', 'pause', 'analysis'")
        return self


class CanarySpec(Spec):
    steps: tuple[CanaryStep, ...] = Field(min_length=1, max_length=64)


class BlueGreenSpec(Spec):
    """The candidate is reachable with ``previewKey`` (the sandbox routing key: header
    ``x-turnout-routing-key``, baggage, cookie or query) until promoted; then all traffic
    moves at once. ``autoPromote`` promotes after the analysis passes."""

    preview_key: RoutingKey
    analysis: AnalysisStepSpec | None = None
    auto_promote: StrictBool = False
    scale_down_delay: Duration = "30s"


class HeaderMatch(Spec):
    name: HeaderName
    value: HeaderValue


class AbTestSpec(Spec):
    """Requests carrying every listed header (exact value) go to the candidate."""

    headers: tuple[HeaderMatch, ...] = Field(min_length=1, max_length=16)
    analysis: AnalysisStepSpec | None = None
    auto_promote: StrictBool = False


class SuccessRateSpec(Spec):
    """Candidate vs stable failure rate, sequentially (always-valid confidence sequence):
    fail when the candidate is worse by more than ``tolerance`` (a fraction) with
    confidence ``1 - alpha``; pass when it is shown to be within it."""

    failure_classes: tuple[Literal["4xx", "5xx", "0xx"], ...] = ("5xx", "0xx")
    tolerance: Annotated[StrictFloat, Field(ge=0.0, le=1.0)] = 0.01
    alpha: Annotated[StrictFloat, Field(gt=0.0, lt=0.5)] = 0.01
    dry_run: StrictBool = False


class LatencySpec(Spec):
    """The candidate's ``percentile`` latency must stay under ``max`` (a duration) and
    under ``maxRatio`` times stable's (when stable has samples)."""

    percentile: Annotated[StrictFloat, Field(gt=0.0, lt=100.0)] = 99.0
    max: Duration | None = None
    max_ratio: Annotated[StrictFloat, Field(ge=1.0)] | None = 1.5
    dry_run: StrictBool = False


Url = Annotated[StrictStr, Field(pattern=r"^https?://", max_length=2048)]


class PrometheusMetric(Spec):
    """An instant query (``GET address/api/v1/query``); the first sample is the value."""

    address: Url
    query: Annotated[StrictStr, Field(min_length=1, max_length=4096)]


class WebMetric(Spec):
    """``GET url``; the JSON value at ``jsonPath`` (dotted, numbers index lists; empty:
    the whole body) is the value."""

    url: Url
    json_path: Annotated[StrictStr, Field(max_length=256)] = ""


class MetricSpec(Spec):
    """A metric read from another system every ``interval`` while the release is live:
    it passes while the value is within [``min``, ``max``], fails after more than
    ``failureLimit`` readings in a row outside, and is inconclusive without data (an
    empty result, a provider error)."""

    name: ObjectName
    prometheus: PrometheusMetric | None = None
    web: WebMetric | None = None
    min: StrictFloat | StrictInt | None = None
    max: StrictFloat | StrictInt | None = None
    interval: Duration = "10s"
    timeout: Duration = "5s"
    failure_limit: Annotated[StrictInt, Field(ge=0, le=100)] = 0
    dry_run: StrictBool = False

    @model_validator(mode="after")
    def _valid(self) -> MetricSpec:
        if (self.prometheus is None) == (self.web is None):
            raise ValueError("give exactly one of 'prometheus' and 'web'")
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both (the range the value must stay in)")
        return self


class AnalysisSpec(Spec):
    min_samples: Annotated[StrictInt, Field(ge=1, le=10_000_000)] = 100
    success_rate: SuccessRateSpec = SuccessRateSpec()
    latency: LatencySpec | None = None
    # Also judge outside analysis steps, whenever the candidate takes traffic.
    continuous: StrictBool = True
    on_failure: Literal["abort", "pause"] = "abort"
    on_inconclusive: Literal["pause", "abort"] = "pause"
    # Also judge each route on its own: a candidate failing on one route fails even when
    # the sum over the Backend's routes hides it.
    per_route: StrictBool = False
    # Metrics from other systems (Prometheus, a JSON URL), judged beside the gateway's.
    metrics: tuple[MetricSpec, ...] = Field(default=(), max_length=16)


class StrategySpec(Spec):
    canary: CanarySpec | None = None
    blue_green: BlueGreenSpec | None = None
    ab_test: AbTestSpec | None = None

    @model_validator(mode="after")
    def _one(self) -> StrategySpec:
        given = [f for f in ("canary", "blue_green", "ab_test") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'canary', 'blueGreen', 'abTest'")
        return self


WebhookType = Literal[
    "confirm-rollout",
    "pre-rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "rollback",
    "post-rollout",
]


class WebhookSpec(Spec):
    """A Flagger-compatible gate: ``POST url`` with ``{"name", "namespace", "phase",
    "metadata"}``; a 2xx answer opens a ``confirm-*`` gate (others hold the release),
    fails ``pre-rollout`` (the release is degraded), triggers ``rollback``;
    ``post-rollout`` is told the outcome."""

    name: ObjectName
    type: WebhookType
    url: Annotated[StrictStr, Field(pattern=r"^https?://", max_length=2048)]
    timeout: Duration = "5s"
    metadata: dict[StrictStr, StrictStr] = Field(default_factory=dict)


def _release_ref(v: str) -> str:
    parts = v.split("/")
    if len(parts) > 2 or not all(_NAME.fullmatch(p) for p in parts):
        raise ValueError(f"{v!r} is not a Release name or NAMESPACE/NAME")
    return v


_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
ReleaseRef = Annotated[StrictStr, Field(max_length=507), AfterValidator(_release_ref)]


class ScheduleSpec(Spec):
    """When a queued release may start: not before ``notBefore`` (RFC 3339) and, with
    ``cron``, at the first cron time after it was queued (read in ``timeZone``). A start
    held up by the queue or a blackout happens as soon as they allow."""

    not_before: Timestamp | None = None
    cron: Cron | None = None
    time_zone: TimeZone = "UTC"


class ApprovalSpec(Spec):
    """A manual gate: the release holds before the transition of ``type`` until someone
    approves it (``turnout release approve NAME --gate NAME``), once per step."""

    name: ObjectName
    type: Literal["confirm-rollout", "confirm-traffic-increase", "confirm-promotion"]


class ReleaseSpec(Spec):
    backend: ObjectName
    candidate: CandidateSpec
    strategy: StrategySpec
    split: SplitSpec = SplitSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    webhooks: tuple[WebhookSpec, ...] = Field(default=(), max_length=32)
    approvals: tuple[ApprovalSpec, ...] = Field(default=(), max_length=16)
    # In an Environment's queue: higher first (then first queued).
    priority: Annotated[StrictInt, Field(ge=-1000, le=1000)] = 0
    schedule: ScheduleSpec | None = None
    # A release train: start only when every one of these Releases is Promoted; abort
    # when one of them is Aborted or Degraded.
    depends_on: tuple[ReleaseRef, ...] = Field(default=(), max_length=32)
    description: Annotated[StrictStr, Field(max_length=1024)] | None = None


class ReleaseObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["Release"]
    metadata: ObjectMeta
    spec: ReleaseSpec
    status: dict[str, Any] | None = None


def version_labels(namespace: str, name: str, spec: ReleaseSpec) -> tuple[str, str]:
    """The backend labels the data plane counts each version under (stable, candidate):
    the data plane compiles them and release analysis reads them back."""
    stable = f"{namespace}/{spec.backend}"
    if spec.candidate.backend is not None:
        return stable, f"{namespace}/{spec.candidate.backend}"
    return stable, f"{stable}@release:{name}"
