"""Object endpoints, Kubernetes style: list, get, create, replace, merge-patch, delete.

Namespaced kinds live under ``/namespaces/{ns}/{plural}``; ``/{plural}`` lists across
namespaces (or creates/reads cluster-scoped kinds such as ``namespaces``). Reads come
from the control plane's memory; writes go through ``writes.commit``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse

from turnout.control.api.deps import Control, Editor, Viewer, forbid
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.api.writes import commit, is_dry_run
from turnout.control.auth import Principal
from turnout.control.objects import (
    BY_PLURAL,
    CLUSTER_NAMESPACE,
    KIND_INFO,
    KindInfo,
    describe_key,
    parse_manifests,
    strip_server_fields,
)
from turnout.control.patch import merge_patch
from turnout.control.selectors import SelectorError, matches, parse_selector
from turnout.control.service import ControlPlane, Entry, OwnedByFile
from turnout.control.store.repository import Change, redacted

router = APIRouter(tags=["objects"], responses=FAILURES)


# Path parameters are enumerated (from the kinds registry, via BY_PLURAL) so the OpenAPI
# document says which types exist; an unknown one still answers 404 (see
# errors.bad_request). The type checker sees plain strings: a Literal built at run time is
# opaque to it.
def path_plurals(by_plural: dict[str, KindInfo]) -> tuple[tuple[str, ...], ...]:
    """Every plural, the namespaced ones, the cluster-scoped ones (in registry order)."""
    return (
        tuple(by_plural),
        tuple(p for p, k in by_plural.items() if k.namespaced),
        tuple(p for p, k in by_plural.items() if not k.namespaced),
    )


if TYPE_CHECKING:
    AnyPlural = str
    NamespacedPlural = str
    ClusterPlural = str
else:
    _ANY, _NAMESPACED, _CLUSTER = path_plurals(BY_PLURAL)
    AnyPlural = Literal[_ANY]
    NamespacedPlural = Literal[_NAMESPACED]
    ClusterPlural = Literal[_CLUSTER]

DryRun = Annotated[str | None, Query(alias="dryRun", description="'All': validate only")]
Message = Annotated[str, Query(max_length=1000, description="recorded with the revision")]
Manifest = Annotated[dict[str, Any], Body(description="a Kubernetes-style manifest")]


def _kind(plural: str) -> KindInfo:
    info = BY_PLURAL.get(plural)
    if info is None:
        raise ApiError(404, f"unknown resource type {plural!r}; known: {', '.join(BY_PLURAL)}")
    return info


def _encode(ns: str, name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ns, name]).encode()).decode().rstrip("=")


def _decode(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        ns, name = json.loads(raw)
        return str(ns), str(name)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ApiError(400, "invalid 'continue' token") from None


def _list(
    control: ControlPlane,
    principal: Principal,
    info: KindInfo,
    namespace: str | None,
    selector_text: str,
    limit: int | None,
    cont: str | None,
) -> dict[str, Any]:
    try:
        selector = parse_selector(selector_text)
    except SelectorError as exc:
        raise ApiError(400, str(exc)) from None
    entries = [
        e
        for key, e in control.view.items()
        if key[0] == info.kind
        and (namespace is None or not info.namespaced or key[1] == namespace)
        and principal.sees_namespace(key[1])
        and matches(selector, e.labels)
    ]
    entries.sort(key=lambda e: (e.key[1], e.key[2]))
    if cont:
        after = _decode(cont)
        entries = [e for e in entries if (e.key[1], e.key[2]) > after]
    next_token = None
    if limit is not None and len(entries) > limit:
        entries = entries[:limit]
        last = entries[-1].key
        next_token = _encode(last[1], last[2])
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [control.render(e) for e in entries],
        "metadata": {"revision": control.store_revision, "continue": next_token},
    }


Selector = Annotated[str, Query(alias="labelSelector", max_length=4096)]
Limit = Annotated[int | None, Query(ge=1, le=10_000)]
Continue = Annotated[str | None, Query(alias="continue", max_length=1024)]


@router.get("/kinds")
async def kinds(_: Viewer) -> dict[str, Any]:
    return {"items": [k.as_json() for k in KIND_INFO.values()]}


@router.get("/{plural}")
async def list_all(
    plural: AnyPlural,
    control: Control,
    principal: Viewer,
    namespace: Annotated[str | None, Query(max_length=253)] = None,
    label_selector: Selector = "",
    limit: Limit = None,
    cont: Continue = None,
) -> dict[str, Any]:
    """List objects of one kind, across namespaces unless ``namespace`` is given."""
    return _list(control, principal, _kind(plural), namespace, label_selector, limit, cont)


@router.get("/namespaces/{namespace}/{plural}")
async def list_namespaced(
    namespace: str,
    plural: NamespacedPlural,
    control: Control,
    principal: Viewer,
    label_selector: Selector = "",
    limit: Limit = None,
    cont: Continue = None,
) -> dict[str, Any]:
    info = _namespaced(plural)
    return _list(control, principal, info, namespace, label_selector, limit, cont)


def _namespaced(plural: str) -> KindInfo:
    info = _kind(plural)
    if not info.namespaced:
        raise ApiError(404, f"{info.kind} is cluster-scoped: use /api/v1/{info.plural}")
    return info


def _cluster(plural: str) -> KindInfo:
    info = _kind(plural)
    if info.namespaced:
        raise ApiError(
            404, f"{info.kind} is namespaced: use /api/v1/namespaces/NAMESPACE/{info.plural}/NAME"
        )
    return info


def _entry(control: ControlPlane, principal: Principal, key: tuple[str, str, str]) -> Entry:
    entry = control.view.get(key)
    if entry is None or not principal.sees_namespace(key[1]):
        raise ApiError(404, f"{describe_key(*key)} not found")
    return entry


# -- reads -------------------------------------------------------------------------------


@router.get("/namespaces/{namespace}/{plural}/{name}")
async def get_namespaced(
    namespace: str, plural: NamespacedPlural, name: str, control: Control, principal: Viewer
) -> dict[str, Any]:
    info = _namespaced(plural)
    return control.render(_entry(control, principal, (info.kind, namespace, name)))


@router.get("/{plural}/{name}")
async def get_cluster(
    plural: ClusterPlural, name: str, control: Control, principal: Viewer
) -> dict[str, Any]:
    info = _cluster(plural)
    return control.render(_entry(control, principal, (info.kind, CLUSTER_NAMESPACE, name)))


# -- writes ------------------------------------------------------------------------------


def _check_body(info: KindInfo, namespace: str, name: str | None, body: dict[str, Any]) -> None:
    if body.get("kind") != info.kind:
        raise ApiError(400, f"the body's kind must be {info.kind!r} at this path")
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        raise ApiError(400, "the body has no metadata")
    if name is not None and meta.get("name") != name:
        raise ApiError(400, f"metadata.name must be {name!r} at this path")
    if info.namespaced:
        given = meta.get("namespace")
        if given is not None and given != namespace:
            raise ApiError(
                400, f"metadata.namespace {given!r} does not match the path ({namespace!r})"
            )
        body["metadata"] = {**meta, "namespace": namespace}


def _expected_version(body: dict[str, Any]) -> int | None:
    raw = (body.get("metadata") or {}).get("resourceVersion")
    if raw is None:
        return None
    text = str(raw)
    if not text.isdigit() or len(text) > 18:
        raise ApiError(400, f"metadata.resourceVersion {raw!r} is not a resource version")
    return int(text)


async def _writable(
    control: ControlPlane, request: Request, principal: Principal, key: tuple[str, str, str]
) -> None:
    if not principal.writes_namespace(key[1]):
        where = f"namespace {key[1]!r}" if key[1] else "cluster-scoped objects"
        await forbid(
            control, request, principal, f"token {principal.name!r} may not change {where}"
        )


async def _put(
    control: ControlPlane,
    request: Request,
    principal: Principal,
    info: KindInfo,
    namespace: str,
    name: str | None,
    body: dict[str, Any],
    *,
    must_exist: bool,
    action: str,
    message: str,
    dry_run: bool,
    expect_version: int | None,
) -> JSONResponse:
    _check_body(info, namespace, name, body)
    parsed, problems = parse_manifests([body])
    if any(p.severity == "error" for p in problems) or not parsed:
        target = f"{info.kind} {namespace}/{(body.get('metadata') or {}).get('name', '?')}"
        await control.audit(
            principal, action, "invalid", target, str(problems[0]) if problems else ""
        )
        raise ApiError(422, f"{len(problems)} validation error(s); nothing was changed", problems)
    obj = parsed[0]
    key = (obj.kind, obj.namespace, obj.name)
    await _writable(control, request, principal, key)
    change = Change(
        "put",
        obj.kind,
        obj.namespace,
        obj.name,
        obj.manifest,
        expect_version=expect_version,
        must_exist=must_exist,
    )
    result = await commit(
        control,
        request,
        principal,
        [change],
        action=action,
        target=describe_key(*key),
        message=message,
        dry_run=dry_run,
    )
    code = 201 if (result.results and result.results[0].action == "created") else 200
    if dry_run or key not in control.view:
        after = result.results[0].after if result.results else obj.manifest
        return JSONResponse(redacted(after or {}), status_code=code)
    return JSONResponse(control.render(control.view[key]), status_code=code)


@router.post("/namespaces/{namespace}/{plural}", status_code=201)
async def create_namespaced(
    namespace: str,
    plural: NamespacedPlural,
    body: Manifest,
    request: Request,
    control: Control,
    principal: Editor,
    dry_run: DryRun = None,
    message: Message = "",
) -> JSONResponse:
    info = _namespaced(plural)
    return await _put(
        control,
        request,
        principal,
        info,
        namespace,
        None,
        body,
        must_exist=False,
        action="create",
        message=message,
        dry_run=is_dry_run(dry_run),
        expect_version=None,
    )


@router.post("/{plural}", status_code=201)
async def create_cluster(
    plural: ClusterPlural,
    body: Manifest,
    request: Request,
    control: Control,
    principal: Editor,
    dry_run: DryRun = None,
    message: Message = "",
) -> JSONResponse:
    info = _cluster(plural)
    return await _put(
        control,
        request,
        principal,
        info,
        CLUSTER_NAMESPACE,
        None,
        body,
        must_exist=False,
        action="create",
        message=message,
        dry_run=is_dry_run(dry_run),
        expect_version=None,
    )


@router.put("/namespaces/{namespace}/{plural}/{name}")
async def replace_namespaced(
    namespace: str,
    plural: NamespacedPlural,
    name: str,
    body: Manifest,
    request: Request,
    control: Control,
    principal: Editor,
    dry_run: DryRun = None,
    message: Message = "",
) -> JSONResponse:
    info = _namespaced(plural)
    return await _put(
        control,
        request,
        principal,
        info,
        namespace,
        name,
        body,
        must_exist=True,
        action="replace",
        message=message,
        dry_run=is_dry_run(dry_run),
        expect_version=_expected_version(body),
    )


@router.put("/{plural}/{name}")
async def replace_cluster(
    plural: ClusterPlural,
    name: str,
    body: Manifest,
    request: Request,
    control: Control,
    principal: Editor,
    dry_run: DryRun = None,
    message: Message = "",
) -> JSONResponse:
    info = _cluster(plural)
    return await _put(
        control,
        request,
        principal,
        info,
        CLUSTER_NAMESPACE,
        name,
        body,
        must_exist=True,
        action="replace",
        message=message,
        dry_run=is_dry_run(dry_run),
        expect_version=_expected_version(body),
    )


async def _patch(
    control: ControlPlane,
    request: Request,
    principal: Principal,
    info: KindInfo,
    namespace: str,
    name: str,
    dry_run: DryRun,
    message: str,
) -> JSONResponse:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/merge-patch+json", "application/json"):
        raise ApiError(
            415, "PATCH takes a JSON merge patch (Content-Type: application/merge-patch+json)"
        )
    try:
        patch = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the patch is not valid JSON") from None
    if not isinstance(patch, dict):
        raise ApiError(400, "a merge patch must be a JSON object")
    key = (info.kind, namespace, name)
    entry = _entry(control, principal, key)
    await _writable(control, request, principal, key)
    owner = control.file_owner(key)
    if owner is not None:
        where = owner.removeprefix("file:")
        raise OwnedByFile(
            f"{describe_key(*key)} is managed by file {where}; change the file instead"
        )
    expect = _expected_version(patch) if isinstance(patch.get("metadata"), dict) else None
    body = merge_patch(strip_server_fields(entry.manifest), strip_server_fields(patch))
    if not isinstance(body, dict) or body.get("kind") != info.kind:
        raise ApiError(400, "a patch may not change kind")
    meta = body.get("metadata") or {}
    if meta.get("name") != name or (info.namespaced and meta.get("namespace") != namespace):
        raise ApiError(400, "a patch may not change metadata.name or metadata.namespace")
    return await _put(
        control,
        request,
        principal,
        info,
        namespace,
        name,
        body,
        must_exist=True,
        action="patch",
        message=message,
        dry_run=is_dry_run(dry_run),
        expect_version=expect if expect is not None else entry.resource_version,
    )


_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/merge-patch+json": {"schema": {"type": "object"}}},
    }
}


@router.patch("/namespaces/{namespace}/{plural}/{name}", openapi_extra=_PATCH_BODY)
async def patch_namespaced(
    namespace: str,
    plural: NamespacedPlural,
    name: str,
    request: Request,
    control: Control,
    principal: Editor,
    dry_run: DryRun = None,
    message: Message = "",
) -> JSONResponse:
    info = _namespaced(plural)
    return await _patch(control, request, principal, info, namespace, name, dry_run, message)


@router.patch("/{plural}/{name}", openapi_extra=_PATCH_BODY)
async def patch_cluster(
    plural: ClusterPlural,
    name: str,
    request: Request,
    control: Control,
    principal: Editor,
    dry_run: DryRun = None,
    message: Message = "",
) -> JSONResponse:
    info = _cluster(plural)
    return await _patch(
        control, request, principal, info, CLUSTER_NAMESPACE, name, dry_run, message
    )


async def _delete(
    control: ControlPlane,
    request: Request,
    principal: Principal,
    info: KindInfo,
    namespace: str,
    name: str,
    resource_version: int | None,
    dry_run: bool,
    message: str,
) -> dict[str, Any]:
    key = (info.kind, namespace, name)
    _entry(control, principal, key)
    await _writable(control, request, principal, key)
    change = Change("delete", *key, None, expect_version=resource_version, must_exist=True)
    result = await commit(
        control,
        request,
        principal,
        [change],
        action="delete",
        target=describe_key(*key),
        message=message,
        dry_run=dry_run,
    )
    return {
        "status": "Success",
        "revision": result.revision,
        "dryRun": dry_run,
        "kind": info.kind,
        "namespace": namespace,
        "name": name,
    }


ResourceVersion = Annotated[int | None, Query(alias="resourceVersion", ge=0, le=2**62)]


@router.delete("/namespaces/{namespace}/{plural}/{name}")
async def delete_namespaced(
    namespace: str,
    plural: NamespacedPlural,
    name: str,
    request: Request,
    control: Control,
    principal: Editor,
    resource_version: ResourceVersion = None,
    dry_run: DryRun = None,
    message: Message = "",
) -> dict[str, Any]:
    info = _namespaced(plural)
    return await _delete(
        control,
        request,
        principal,
        info,
        namespace,
        name,
        resource_version,
        is_dry_run(dry_run),
        message,
    )


@router.delete("/{plural}/{name}")
async def delete_cluster(
    plural: ClusterPlural,
    name: str,
    request: Request,
    control: Control,
    principal: Editor,
    resource_version: ResourceVersion = None,
    dry_run: DryRun = None,
    message: Message = "",
) -> dict[str, Any]:
    info = _cluster(plural)
    return await _delete(
        control,
        request,
        principal,
        info,
        CLUSTER_NAMESPACE,
        name,
        resource_version,
        is_dry_run(dry_run),
        message,
    )
