"""Promotion of a finished release to the next Environment: the same spec, as a new
Release in the target environment's namespace (its first, unless one is named), where
it joins that environment's queue like any other.

Two ways: ``promote_to`` (``turnout release promote-to NAME ENV``, the API's
``promote-to`` command; the release must be ``Promoted``) and ``follow_next`` (the
reconciler, when a release of an environment with ``next`` reaches ``Promoted``). The
copy carries ``PROMOTED_FROM`` (``namespace/name``) and is created only if no Release of
that name exists there (``must_exist=False``): a promotion never overwrites a release.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from turnout.control.auth import Principal
from turnout.control.reconcile.base import Context
from turnout.control.releases.queue import Env, environment_of, environments, state_of
from turnout.control.releases.state import PROMOTED
from turnout.control.store.errors import Conflict
from turnout.control.store.records import Change, StoredObject

PROMOTED_FROM: Final = "turnout.dev/promoted-from"
log = logging.getLogger("turnout.control.releases")


class PromotionError(ValueError):
    """The release cannot be promoted there (with why, for a 409/404 answer)."""


def copy_to(obj: StoredObject, env: Env, namespace: str | None = None) -> Change:
    target = namespace or env.spec.namespaces[0]
    if target not in env.spec.namespaces:
        raise PromotionError(f"namespace {target!r} is not in environment {env.name}")
    if target == obj.namespace:
        raise PromotionError(
            f"{obj.namespace}/{obj.name} is already in namespace {target} of {env.name}"
        )
    manifest: dict[str, Any] = {
        "apiVersion": obj.api_version,
        "kind": "Release",
        "metadata": {
            "name": obj.name,
            "namespace": target,
            "labels": dict(obj.labels),
            "annotations": {PROMOTED_FROM: f"{obj.namespace}/{obj.name}"},
        },
        "spec": obj.spec,
    }
    return Change("put", "Release", target, obj.name, manifest, must_exist=False)


async def follow_next(obj: StoredObject, ctx: Context) -> None:
    """Copy a promoted release to its environment's ``next`` unless it is there."""
    objects = ctx.objects()
    envs = environments(objects)
    env = environment_of(obj.namespace, envs)
    if env is None or env.spec.next is None:
        return
    target = envs.get(env.spec.next)
    if target is None:
        log.warning(
            "release %s/%s: environment %s names next %s, which does not exist",
            obj.namespace,
            obj.name,
            env.name,
            env.spec.next,
        )
        return
    try:
        change = copy_to(obj, target)
    except PromotionError as exc:
        log.warning(
            "release %s/%s: not promoted to %s: %s", obj.namespace, obj.name, target.name, exc
        )
        return
    if change.key in objects:
        return
    try:
        await ctx.commit(
            [change],
            message=f"promote {obj.namespace}/{obj.name} to {target.name} (next of {env.name})",
            action="release-promote-to",
        )
    except Conflict:
        return  # created meanwhile: never overwrite


async def promote_to(
    host: Any,
    namespace: str,
    name: str,
    environment: str,
    principal: Principal,
    target_namespace: str | None = None,
) -> Change:
    """Copy a ``Promoted`` release into ``environment`` (as ``principal``)."""
    obj = await host.store.get("Release", namespace, name)
    state = state_of(obj)
    if state.phase != PROMOTED:
        raise PromotionError(
            f"release {namespace}/{name} is {state.phase}: only a Promoted release moves on"
        )
    _, stored = await host.store.load()
    objects = {o.key: o for o in stored}
    env = environments(objects).get(environment)
    if env is None:
        raise PromotionError(f"no Environment named {environment!r}")
    change = copy_to(obj, env, target_namespace)
    try:
        await host.write(
            [change],
            principal,
            message=f"promote {namespace}/{name} to {environment}",
            action="release-promote-to",
        )
    except Conflict:
        raise PromotionError(
            f"a Release {change.namespace}/{change.name} exists already in {environment}"
        ) from None
    return change
