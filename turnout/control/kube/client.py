"""A small asyncio client for the Kubernetes REST API, on httpx (already a dependency).

Why not the official ``kubernetes`` package: it is synchronous (a thread per watch), and
against a real API server it re-sends a Lease's ``renewTime`` in a format the server
refuses and turns ``default: ""`` in CRD schemas into null. ``kubernetes_asyncio`` is
generated from the same code and models. A controller needs five verbs — list, watch,
get, merge-patch (status) and create/replace — on plain JSON, which is what the REST API
speaks, so objects stay the dicts the server sent (no model round-trip can mangle them)
and there is no new dependency.

Errors: ``KubeGone`` for 410 (the caller relists), ``KubeAPIError`` for any other
non-success answer (with the server's ``Status`` message), ``httpx.HTTPError`` when the
server cannot be reached.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from turnout.control.kube.connection import KubeConnection

WATCH_SECONDS = 240  # the server ends a watch after this; we resume from the last version


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            prefix += f"/namespaces/{namespace}"
        prefix += f"/{self.plural}"
        return f"{prefix}/{name}" if name else prefix


class KubeAPIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class KubeGone(KubeAPIError):
    """410: the resourceVersion is too old to resume from; list again."""


def _error(resp: httpx.Response) -> KubeAPIError:
    try:
        message = str(resp.json().get("message", resp.text))
    except ValueError:
        message = resp.text[:300]
    cls = KubeGone if resp.status_code == 410 else KubeAPIError
    return cls(resp.status_code, message)


class KubeClient:
    def __init__(self, connection: KubeConnection, timeout: float = 10.0) -> None:
        self.connection = connection
        self.http = httpx.AsyncClient(
            base_url=connection.server,
            verify=connection.ssl,
            timeout=httpx.Timeout(timeout, read=WATCH_SECONDS + 30.0),
        )

    async def close(self) -> None:
        await self.http.aclose()

    def _headers(self, content_type: str = "") -> list[tuple[str, str]]:
        headers = [("Accept", "application/json")]
        token = self.connection.bearer()
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        if content_type:
            headers.append(("Content-Type", content_type))
        if self.connection.impersonate:
            headers.append(("Impersonate-User", self.connection.impersonate))
            headers.extend(("Impersonate-Group", g) for g in self.connection.impersonate_groups)
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        content = json.dumps(body).encode() if body is not None else None
        resp = await self.http.request(
            method,
            path,
            content=content,
            params=params,
            headers=self._headers(content_type if content is not None else ""),
            timeout=10.0,
        )
        if resp.status_code >= 300:
            raise _error(resp)
        return dict(resp.json())

    async def served(self, group: str, version: str) -> set[str]:
        """The plurals a group/version serves; empty when the server does not have it."""
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            found = await self.request("GET", path)
        except KubeAPIError as exc:
            if exc.status == 404:
                return set()
            raise
        return {r["name"] for r in found.get("resources", []) if "/" not in r["name"]}

    async def list(self, rt: ResourceType) -> tuple[list[dict[str, Any]], str]:
        """Every object (all namespaces) and the collection's resourceVersion."""
        found = await self.request("GET", rt.path())
        items = found.get("items") or []
        for item in items:  # list items carry no kind/apiVersion; the translators want them
            item.setdefault("kind", rt.kind)
            item.setdefault("apiVersion", rt.api_version)
        return items, str(found.get("metadata", {}).get("resourceVersion", ""))

    async def watch(self, rt: ResourceType, version: str) -> AsyncIterator[dict[str, Any]]:
        """Events after ``version`` (bookmarks included) until the server ends the watch."""
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async with self.http.stream(
            "GET", rt.path(), params=params, headers=self._headers()
        ) as resp:
            if resp.status_code >= 300:
                await resp.aread()
                raise _error(resp)
            async for line in resp.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    code = int(status.get("code", 500))
                    cls = KubeGone if code == 410 else KubeAPIError
                    raise cls(code, str(status.get("message", "")))
                yield event

    async def patch_status(
        self, rt: ResourceType, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource."""
        return await self.request(
            "PATCH",
            rt.path(namespace, name) + "/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
