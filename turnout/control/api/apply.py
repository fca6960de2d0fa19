"""Multi-object writes: ``POST /apply`` and ``POST /delete``, each one atomic revision.

The body is either multi-document YAML (``Content-Type: application/yaml``; problems
then name ``<request>:LINE:COLUMN``) or JSON ``{"manifests": [...]}``. Every object is
validated before anything is written; the whole set is one commit, so either all of it
becomes the next revision or nothing changes.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from turnout.control.api.deps import Control, Editor, forbid
from turnout.control.api.errors import FAILURES, ApiError
from turnout.control.api.writes import commit, is_dry_run, results_json
from turnout.control.objects import (
    KIND_INFO,
    Parsed,
    describe_key,
    object_namespace,
    parse_manifests,
    parse_yaml,
    relocate,
)
from turnout.control.store.errors import Invalid
from turnout.control.store.repository import Change

router = APIRouter(tags=["apply"], responses=FAILURES)

MAX_BODY = 16 * 1024 * 1024
# Only the envelope is described: whether a manifest is valid depends on the kind's full
# schema and on the other objects (cross-object checks), which answer 422 with problems.
_MANIFEST = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string", "enum": list(KIND_INFO)},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
        },
    },
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["manifests"],
                    "properties": {
                        "manifests": {"type": "array", "minItems": 1, "items": _MANIFEST},
                    },
                }
            },
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


async def _read_body(request: Request) -> tuple[str, Any]:
    """``("yaml", text)`` or ``("json", manifests)``."""
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_BODY:
        raise ApiError(413, f"request body larger than {MAX_BODY // (1024 * 1024)} MiB")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"request body larger than {MAX_BODY // (1024 * 1024)} MiB")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8") from None
    if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
        return "yaml", text
    if ctype in ("application/json", ""):
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        manifests = body.get("manifests") if isinstance(body, dict) else None
        if not isinstance(manifests, list):
            raise ApiError(400, 'the JSON body must be {"manifests": [ ... ]}')
        return "json", manifests
    raise ApiError(
        415, f"unsupported Content-Type {ctype!r}: use application/yaml or application/json"
    )


def _reject_duplicates(parsed: list[Parsed]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for p in parsed:
        key = (p.kind, p.namespace, p.name)
        if key in seen:
            raise ApiError(400, f"{describe_key(*key)} appears twice in the request")
        seen.add(key)


@router.post("/apply", openapi_extra=_BODY)
async def apply(
    request: Request,
    control: Control,
    principal: Editor,
    dry_run: Annotated[str | None, Query(alias="dryRun")] = None,
    message: Annotated[str, Query(max_length=1000)] = "",
) -> dict[str, Any]:
    """Create or update every object in the body, as one revision (like ``kubectl apply``)."""
    form, payload = await _read_body(request)
    parsed, problems = parse_yaml(payload) if form == "yaml" else parse_manifests(payload)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        await control.audit(principal, "apply", "invalid", "", str(errors[0]))
        raise ApiError(422, f"{len(errors)} validation error(s); nothing was changed", errors)
    if not parsed:
        raise ApiError(400, "no objects in the request")
    _reject_duplicates(parsed)
    for p in parsed:
        if not principal.writes_namespace(p.namespace):
            where = f"namespace {p.namespace!r}" if p.namespace else "cluster-scoped objects"
            await forbid(
                control, request, principal, f"token {principal.name!r} may not change {where}"
            )
    changes = [Change("put", p.kind, p.namespace, p.name, p.manifest) for p in parsed]
    dry = is_dry_run(dry_run)
    target = ", ".join(describe_key(p.kind, p.namespace, p.name) for p in parsed[:5])
    try:
        result = await commit(
            control,
            request,
            principal,
            changes,
            action="apply",
            target=target,
            message=message,
            dry_run=dry,
        )
    except Invalid as exc:
        raise Invalid(relocate(exc.problems, parsed)) from None
    return results_json(result, dry)


@router.post("/delete", openapi_extra=_BODY)
async def delete_many(
    request: Request,
    control: Control,
    principal: Editor,
    dry_run: Annotated[str | None, Query(alias="dryRun")] = None,
    message: Annotated[str, Query(max_length=1000)] = "",
) -> dict[str, Any]:
    """Delete every object named in the body (only kind and metadata are read)."""
    form, payload = await _read_body(request)
    if form == "yaml":
        from turnout.config.yamldocs import load_documents

        docs, problems = load_documents(payload, "<request>")
        if problems:
            raise ApiError(422, "the YAML body has errors", problems)
        manifests = [d.data for d in docs if d.data is not None]
    else:
        manifests = payload
    if not manifests:
        raise ApiError(400, "no objects in the request")
    keys: list[tuple[str, str, str]] = []
    for i, m in enumerate(manifests):
        kind = m.get("kind") if isinstance(m, dict) else None
        meta = m.get("metadata") if isinstance(m, dict) else None
        if (
            not isinstance(kind, str)
            or kind not in KIND_INFO
            or not isinstance(meta, dict)
            or not isinstance(meta.get("name"), str)
            or not meta["name"]
            or not isinstance(meta.get("namespace", ""), str)
        ):
            raise ApiError(400, f"object {i}: needs a known kind and metadata.name (strings)")
        key = (kind, object_namespace(kind, m), meta["name"])
        if key not in keys:
            keys.append(key)
    missing = [k for k in keys if k not in control.view]
    present = [k for k in keys if k in control.view]
    for key in present:
        if not principal.writes_namespace(key[1]):
            await forbid(
                control,
                request,
                principal,
                f"token {principal.name!r} may not change {describe_key(*key)}",
            )
    dry = is_dry_run(dry_run)
    body: dict[str, Any] = {
        "revision": control.store_revision,
        "changed": False,
        "dryRun": dry,
        "results": [],
    }
    if present:
        changes = [Change("delete", *k, None, must_exist=True) for k in present]
        result = await commit(
            control,
            request,
            principal,
            changes,
            action="delete",
            target=", ".join(describe_key(*k) for k in present[:5]),
            message=message,
            dry_run=dry,
        )
        body = results_json(result, dry)
    for k in missing:
        body["results"].append(
            {"kind": k[0], "namespace": k[1], "name": k[2], "action": "not found"}
        )
    return body
