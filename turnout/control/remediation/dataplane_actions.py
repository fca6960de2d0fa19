"""Leased data-plane actions beyond shed and block: endpoints, weights, limits, keys, circuits.

Each writes one ``Mitigation`` named after the step (``rem-<run>-<step>``, so a repeated
step after a restart writes nothing new) with an ``expiresAt``; the snapshot build turns
it into the data-plane change in every worker of every replica (the path ``shed`` takes),
and the ``mitigation-expiry`` reconciler deletes it when the lease ends (auto-revert):

- ``eject_endpoint`` / ``restore_endpoint``: a Backend's endpoint out of its balancer, or
  back in before the lease ends (the ejecting Mitigation is deleted, or pruned);
- ``shift_weight``: a share of a route's weight from one backendRef to another;
- ``tighten_rate_limit``: the route's TrafficPolicy rate limits cut to a percentage;
- ``block_consumers``: authenticated Consumers answered 403 on a route;
- ``pin_routing_key``: requests carrying a routing key go to the baseline, not the override;
- ``open_circuit``: every request to a Backend fails fast (503, ``error-rate``).

Blast radius (the Runbook's ``limits``) is checked against every live Mitigation of the
same target first: ``maxEjectedEndpoints`` per Backend, ``maxWeightShiftPercent`` per
route, ``maxBlockedClients`` (addresses and Consumers together) per route. When the target
is a stored object, parameters are checked against it (the endpoint is the Backend's; the
route has both backendRefs; the last endpoint is never ejected); objects from ``serve -f``
files are not in the store, so for them the data plane's compile is the only check.

``rollback_config`` is different: it makes the stored gateway configuration what it was
at a revision, as a new revision committed (and audited) as ``system:remediation``, like
``turnout rollback``. Runbooks and Mitigations are left as they are, so the rollback
neither deletes the runbook that runs nor lifts the mitigations in force. It has no lease:
rolling forward by itself to the configuration that broke would be unsafe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, StrictInt, StrictStr, field_validator

from turnout.control.remediation.actions import ActionContext, ActionError, ActionParams, action
from turnout.control.remediation.builtin_actions import MITIGATION, _live, _ttl, _write
from turnout.control.store.errors import NotFound
from turnout.control.store.plan import changes_to_reach
from turnout.control.store.records import Change, ObjectKey, StoredObject
from turnout.core.netaddr import AddressError, parse_address

Name = Annotated[StrictStr, Field(min_length=1, max_length=253)]
REMEDIATION_KINDS = frozenset({"Runbook", MITIGATION})  # a rollback leaves them alone


class _Leased(ActionParams):
    ttl: StrictStr = "5m"

    _check_ttl = field_validator("ttl")(_ttl)


class EndpointParams(_Leased):
    backend: Name
    endpoint: Name  # as written in the Backend's endpoints (host:port)


class RestoreParams(ActionParams):
    backend: Name
    endpoint: Name


class ShiftParams(_Leased):
    route: Name
    from_backend: Name = Field(alias="from")
    to_backend: Name = Field(alias="to")
    percent: Annotated[StrictInt, Field(ge=1, le=100)]


class TightenParams(_Leased):
    route: Name
    percent: Annotated[StrictInt, Field(ge=1, le=99)]  # of the configured limits


class ConsumerParams(_Leased):
    route: Name
    consumers: tuple[Name, ...] = Field(min_length=1, max_length=1000)


class PinParams(_Leased):
    route: Name
    keys: tuple[Name, ...] = Field(min_length=1, max_length=100)


class CircuitParams(_Leased):
    backend: Name


class RollbackParams(ActionParams):
    revision: Annotated[StrictInt, Field(ge=1)]
    reason: StrictStr = ""


def _spec(obj: StoredObject | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    return obj.spec if isinstance(obj.spec, dict) else {}


def endpoint_id(address: str) -> str:
    try:
        return str(parse_address(address, allow_missing_port=True))
    except AddressError:
        return address


@action("eject_endpoint", EndpointParams)
async def eject_endpoint(params: EndpointParams, ctx: ActionContext) -> str:
    """Take one endpoint of a Backend out of its balancer for a while."""
    name = f"rem-{ctx.key}"
    wanted = endpoint_id(params.endpoint)
    ejected = {
        endpoint_id(str(e))
        for s in _live(ctx, params.backend, name, "Backend")
        for e in s.get("ejectEndpoints") or ()
    }
    if wanted not in ejected and len(ejected) + 1 > ctx.limits.max_ejected_endpoints:
        raise ActionError(
            f"blast radius: ejecting {params.endpoint} from backend {params.backend} "
            f"({len(ejected)} already ejected) exceeds maxEjectedEndpoints "
            f"{ctx.limits.max_ejected_endpoints}",
            retry=False,
        )
    spec = _spec(ctx.objects().get(("Backend", ctx.namespace, params.backend)))
    if spec is not None:
        have = {endpoint_id(str(e.get("address", ""))) for e in spec.get("endpoints") or ()}
        if wanted not in have:
            raise ActionError(
                f"backend {ctx.namespace}/{params.backend} has no endpoint {params.endpoint}",
                retry=False,
            )
        if not have - ejected - {wanted}:
            raise ActionError(
                f"refusing to eject the last endpoint of backend {params.backend}", retry=False
            )
    body: dict[str, object] = {"ejectEndpoints": [params.endpoint]}
    return await _write(ctx, name, params.backend, body, params.ttl, "Backend")


@action("restore_endpoint", RestoreParams)
async def restore_endpoint(params: RestoreParams, ctx: ActionContext) -> str:
    """Put an ejected endpoint back before its lease ends."""
    wanted = endpoint_id(params.endpoint)
    changes: list[Change] = []
    for key, obj in _mitigations(ctx.objects(), ctx.namespace, params.backend).items():
        spec = _spec(obj) or {}
        kept = [e for e in spec.get("ejectEndpoints") or () if endpoint_id(str(e)) != wanted]
        if len(kept) == len(spec.get("ejectEndpoints") or ()):
            continue
        version = obj.resource_version
        if kept or spec.get("openCircuit"):
            manifest = obj.manifest()
            manifest["spec"] = {**spec, "ejectEndpoints": kept}
            changes.append(Change("put", *key, manifest, expect_version=version))
        else:
            changes.append(Change("delete", *key, None, expect_version=version))
    if not changes:
        return f"endpoint {params.endpoint} of backend {params.backend} is not ejected"
    await ctx.commit(changes, message=f"remediation run {ctx.run_id}", action="restore")
    return f"endpoint {params.endpoint} of backend {params.backend} restored"


def _mitigations(
    objects: Mapping[ObjectKey, StoredObject], namespace: str, backend: str
) -> dict[ObjectKey, StoredObject]:
    out = {}
    for key, obj in objects.items():
        spec = _spec(obj) or {}
        ref = spec.get("targetRef")
        if key[0] != MITIGATION or key[1] != namespace or not isinstance(ref, dict):
            continue
        if ref.get("kind") == "Backend" and ref.get("name") == backend:
            out[key] = obj
    return out


@action("shift_weight", ShiftParams)
async def shift_weight(params: ShiftParams, ctx: ActionContext) -> str:
    """Move a share of a route's weight from one backendRef to another for a while."""
    name = f"rem-{ctx.key}"
    shifts = [s.get("shiftWeight") for s in _live(ctx, params.route, name)]
    already = sum(int(s.get("percent", 0)) for s in shifts if isinstance(s, dict))
    limit = ctx.limits.max_weight_shift_percent
    if already + params.percent > limit:
        raise ActionError(
            f"blast radius: moving {params.percent}% more of route {params.route}'s weight "
            f"({already}% already) exceeds maxWeightShiftPercent {limit}",
            retry=False,
        )
    spec = _spec(ctx.objects().get(("HTTPRoute", ctx.namespace, params.route)))
    if spec is not None:
        pair = {params.from_backend, params.to_backend}
        rules = spec.get("rules") or ()
        if not any(pair <= {r.get("name") for r in x.get("backendRefs") or ()} for x in rules):
            raise ActionError(
                f"route {params.route} has no rule with both backendRefs "
                f"{params.from_backend} and {params.to_backend}",
                retry=False,
            )
    shift = {"fromBackend": params.from_backend, "toBackend": params.to_backend}
    body: dict[str, object] = {"shiftWeight": {**shift, "percent": params.percent}}
    return await _write(ctx, name, params.route, body, params.ttl)


@action("tighten_rate_limit", TightenParams)
async def tighten_rate_limit(params: TightenParams, ctx: ActionContext) -> str:
    """Cut the route's rate limits (its TrafficPolicy's) to a percentage for a while."""
    body: dict[str, object] = {"rateLimitPercent": params.percent}
    return await _write(ctx, f"rem-{ctx.key}", params.route, body, params.ttl)


@action("block_consumers", ConsumerParams)
async def block_consumers(params: ConsumerParams, ctx: ActionContext) -> str:
    """Refuse an authenticated Consumer's requests on a route for a while."""
    name = f"rem-{ctx.key}"
    already = sum(
        len(s.get("blockClients") or ()) + len(s.get("blockConsumers") or ())
        for s in _live(ctx, params.route, name)
    )
    if already + len(params.consumers) > ctx.limits.max_blocked_clients:
        raise ActionError(
            f"blast radius: blocking {len(params.consumers)} more consumers on route "
            f"{params.route} ({already} clients and consumers already) exceeds "
            f"maxBlockedClients {ctx.limits.max_blocked_clients}",
            retry=False,
        )
    body: dict[str, object] = {"blockConsumers": list(params.consumers)}
    return await _write(ctx, name, params.route, body, params.ttl)


@action("pin_routing_key", PinParams)
async def pin_routing_key(params: PinParams, ctx: ActionContext) -> str:
    """Send requests carrying routing keys to the baseline (not their overrides)."""
    body: dict[str, object] = {"pinKeys": list(params.keys)}
    return await _write(ctx, f"rem-{ctx.key}", params.route, body, params.ttl)


@action("open_circuit", CircuitParams)
async def open_circuit(params: CircuitParams, ctx: ActionContext) -> str:
    """Hold a Backend's circuit open (every request to it fails fast) for a while."""
    body: dict[str, object] = {"openCircuit": True}
    return await _write(ctx, f"rem-{ctx.key}", params.backend, body, params.ttl, "Backend")


@action("rollback_config", RollbackParams)
async def rollback_config(params: RollbackParams, ctx: ActionContext) -> str:
    """Make the stored configuration what it was at a revision (Runbooks and Mitigations
    stay), as a new audited revision."""
    if ctx.revision is None:
        raise ActionError("rollback_config needs the store's revisions", retry=False)
    try:
        manifests = await ctx.revision(params.revision)
    except NotFound:
        raise ActionError(f"revision {params.revision} not found", retry=False) from None
    current = [o for o in ctx.objects().values() if o.kind not in REMEDIATION_KINDS]
    target = [m for m in manifests if m.get("kind") not in REMEDIATION_KINDS]
    changes = changes_to_reach(current, target)
    if not changes:
        return f"configuration already as at revision {params.revision}"
    reason = params.reason or f"remediation run {ctx.run_id}"
    await ctx.commit(
        changes, message=f"rollback to revision {params.revision}: {reason}", action="rollback"
    )
    return f"rolled back to revision {params.revision} ({len(changes)} objects changed)"
