"""The built-in actions: leased data-plane mitigations and the notify webhook.

``shed`` and ``block_clients`` write a ``Mitigation`` object named after the step
(``rem-<run>-<step>``): writing it twice is harmless (a restart may repeat the step), the
desired-state compile turns it into a filter on the route in every worker, and the
``mitigation-expiry`` reconciler deletes it at ``expiresAt`` (auto-revert). Blast-radius
limits are checked against every live Mitigation of the route before writing.

``notify_webhook`` POSTs a JSON message (generic, or Slack's ``{"text": ...}`` shape)
through the circuit breaker of the target host, with an ``Idempotency-Key`` header so a
receiver can drop the repeat a restart may send. The URL is never logged: webhook URLs
carry secrets (Slack's do).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, StrictInt, StrictStr, field_validator

from turnout.config.model.remediation import Network
from turnout.control.remediation.actions import ActionContext, ActionError, ActionParams, action
from turnout.control.remediation.breaker import BreakerOpen
from turnout.control.store.records import Change, rfc3339
from turnout.core.durations import DurationError, parse_duration

MITIGATION = "Mitigation"
GROUPS = {"HTTPRoute": "gateway.networking.k8s.io", "Backend": "turnout.dev"}


def _ttl(v: str) -> str:
    try:
        seconds = parse_duration(v)
    except DurationError as exc:
        raise ValueError(str(exc)) from None
    if not 0 < seconds <= 24 * 3600:
        raise ValueError("a mitigation lease must be within (0, 24h]")
    return v


class ShedParams(ActionParams):
    route: StrictStr
    percent: Annotated[StrictInt, Field(ge=1, le=100)]
    ttl: StrictStr = "5m"

    _check_ttl = field_validator("ttl")(_ttl)


class BlockParams(ActionParams):
    route: StrictStr
    clients: tuple[Network, ...] = Field(min_length=1)
    ttl: StrictStr = "5m"

    _check_ttl = field_validator("ttl")(_ttl)


def _live(
    ctx: ActionContext, route: str, own: str, kind: str = "HTTPRoute"
) -> list[dict[str, Any]]:
    """Specs of the target's other Mitigations (live until their expiry deletes them)."""
    out = []
    for (what, namespace, name), obj in ctx.objects().items():
        if what != MITIGATION or namespace != ctx.namespace or name == own:
            continue
        spec = obj.spec if isinstance(obj.spec, dict) else {}
        ref = spec.get("targetRef")
        if (
            isinstance(ref, dict)
            and ref.get("name") == route
            and ref.get("kind", "HTTPRoute") == kind
        ):
            out.append(spec)
    return out


async def _write(
    ctx: ActionContext,
    name: str,
    route: str,
    body: dict[str, object],
    ttl: str,
    kind: str = "HTTPRoute",
) -> str:
    key = (MITIGATION, ctx.namespace, name)
    if key in ctx.objects():
        return f"mitigation {ctx.namespace}/{name} already applied"
    # rounded up: expiresAt has whole seconds, and a lease must never be shorter than asked
    expires = datetime.fromtimestamp(math.ceil(ctx.now + parse_duration(ttl)), UTC)
    manifest = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": MITIGATION,
        "metadata": {
            "name": name,
            "namespace": ctx.namespace,
            "labels": {"turnout.dev/run": ctx.run_id},
        },
        "spec": {
            "targetRef": {"kind": kind, "name": route, "group": GROUPS[kind]},
            **body,
            "expiresAt": rfc3339(expires),
            "run": ctx.run_id,
        },
    }
    change = Change("put", MITIGATION, ctx.namespace, name, manifest, must_exist=False)
    await ctx.commit([change], message=f"remediation run {ctx.run_id}", action="mitigate")
    return f"mitigation {ctx.namespace}/{name} applied until {rfc3339(expires)}"


@action("shed", ShedParams)
async def shed(params: ShedParams, ctx: ActionContext) -> str:
    """Answer a share of a route's requests with a fast 503 for a while."""
    name = f"rem-{ctx.key}"
    already = sum(
        int(s["shed"].get("percent", 0))
        for s in _live(ctx, params.route, name)
        if isinstance(s.get("shed"), dict)
    )
    if already + params.percent > ctx.limits.max_shed_percent:
        raise ActionError(
            f"blast radius: shedding {params.percent}% more of route {params.route} "
            f"({already}% already) exceeds maxShedPercent {ctx.limits.max_shed_percent}",
            retry=False,
        )
    return await _write(ctx, name, params.route, {"shed": {"percent": params.percent}}, params.ttl)


@action("block_clients", BlockParams)
async def block_clients(params: BlockParams, ctx: ActionContext) -> str:
    """Refuse requests from client addresses (IPs or CIDRs) on a route for a while."""
    name = f"rem-{ctx.key}"
    already = sum(len(s.get("blockClients") or ()) for s in _live(ctx, params.route, name))
    if already + len(params.clients) > ctx.limits.max_blocked_clients:
        raise ActionError(
            f"blast radius: blocking {len(params.clients)} more clients on route {params.route} "
            f"({already} already) exceeds maxBlockedClients {ctx.limits.max_blocked_clients}",
            retry=False,
        )
    body: dict[str, object] = {"blockClients": list(params.clients)}
    return await _write(ctx, name, params.route, body, params.ttl)


class NotifyParams(ActionParams):
    url: StrictStr
    message: Annotated[StrictStr, Field(max_length=4000)]
    format: Literal["generic", "slack"] = "generic"

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname:
            raise ValueError("must be an http:// or https:// URL")
        return v


@action("notify_webhook", NotifyParams)
async def notify_webhook(params: NotifyParams, ctx: ActionContext) -> str:
    """POST a message to a webhook (generic JSON, or Slack's incoming-webhook shape)."""
    parts = urlsplit(params.url)
    host = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    if params.format == "slack":
        body: dict[str, object] = {"text": params.message}
    else:
        body = {"run": ctx.run_id, "step": ctx.key, "message": params.message}
    breaker = ctx.breakers.get(f"webhook:{host}")

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(timeout=ctx.timeout, follow_redirects=False) as client:
            response = await client.post(
                params.url, json=body, headers={"Idempotency-Key": ctx.key}
            )
        if response.status_code >= 500:
            raise ActionError(f"webhook {host} answered {response.status_code}")
        return response

    try:
        response = await breaker.call(post, ctx.timeout)
    except BreakerOpen as exc:
        raise ActionError(str(exc)) from None
    except ActionError:
        raise
    except httpx.HTTPError as exc:
        raise ActionError(f"webhook {host}: {type(exc).__name__}") from None
    except TimeoutError:
        raise ActionError(f"webhook {host}: timed out after {ctx.timeout:g}s") from None
    if response.status_code >= 400:
        raise ActionError(f"webhook {host} refused: {response.status_code}", retry=False)
    return f"notified {host} ({response.status_code})"
