"""GRPCRoute as the HTTPRoute it behaves like.

A gRPC call is an HTTP/2 POST to ``/<package.Service>/<Method>``, so each GRPCRoute match
becomes a path match and the route goes through the same attachment, policy, snapshot
and data-plane code as an HTTPRoute:

- ``{service: S, method: M}`` (Exact) → path Exact ``/S/M``
- ``{service: S}`` or ``{method: M}`` (Exact) → RegularExpression ``/S/[^/]+`` or
  ``/[^/]+/M`` (the given part escaped)
- RegularExpression type → RegularExpression ``/(?:S)/(?:M)``, ``[^/]+`` standing in
  for an omitted part
- no method match → every path

Header matches and the filters GRPCRoute allows (request/response header modifiers,
mirrors) carry over unchanged. The result is a ``GRPCRouteAsHTTP``: an HTTPRoute model
whose ``kind`` stays ``GRPCRoute``, so listeners' ``allowedRoutes.kinds`` and object
references keep telling them apart.
"""

from __future__ import annotations

import re
from typing import Any

from turnout.config.model.routes import GRPCMethodMatch, GRPCRouteAsHTTP, GRPCRouteObject

_ANY_SEGMENT = "[^/]+"


def method_path(match: GRPCMethodMatch | None) -> dict[str, str] | None:
    """The HTTPRoute ``path`` match for a GRPCRoute ``method`` match."""
    if match is None or (match.service is None and match.method is None):
        return None
    if match.type == "Exact":
        service = re.escape(match.service) if match.service else _ANY_SEGMENT
        method = re.escape(match.method) if match.method else _ANY_SEGMENT
        if match.service and match.method:
            return {"type": "Exact", "value": f"/{match.service}/{match.method}"}
        return {"type": "RegularExpression", "value": f"/{service}/{method}"}
    service = f"(?:{match.service})" if match.service else _ANY_SEGMENT
    method = f"(?:{match.method})" if match.method else _ANY_SEGMENT
    return {"type": "RegularExpression", "value": f"/{service}/{method}"}


def as_http(route: GRPCRouteObject) -> GRPCRouteAsHTTP:
    spec = route.spec
    rules: list[dict[str, Any]] = []
    for rule in spec.rules:
        matches = []
        for m in rule.matches:
            out: dict[str, Any] = {
                "headers": [h.model_dump(by_alias=True) for h in m.headers],
            }
            path = method_path(m.method)
            if path is not None:
                out["path"] = path
            matches.append(out)
        rules.append(
            {
                **({"name": rule.name} if rule.name else {}),
                "matches": matches,
                "filters": [f.model_dump(by_alias=True, exclude_none=True) for f in rule.filters],
                "backendRefs": [
                    b.model_dump(by_alias=True, exclude_none=True) for b in rule.backend_refs
                ],
            }
        )
    return GRPCRouteAsHTTP.model_validate(
        {
            "apiVersion": route.api_version,
            "kind": "GRPCRoute",
            "metadata": route.metadata.model_dump(by_alias=True, exclude_none=True),
            "spec": {
                "parentRefs": [
                    p.model_dump(by_alias=True, exclude_none=True) for p in spec.parent_refs
                ],
                "hostnames": list(spec.hostnames),
                "rules": rules,
            },
        }
    )
