"""The console's way to the admin API: the same FastAPI app, called in-process.

Every read and write of the console is an ordinary ``/api/v1`` request carrying the
session's token, sent through ``httpx.ASGITransport`` straight into the app (no socket).
So the console has no second implementation of anything: authentication, RBAC,
namespace scopes, validation, revisions and the audit record (with the browser's
address) are exactly the API's.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from turnout.control.console.sessions import Session

API = "/api/v1"


class ApiFailure(Exception):
    """The API refused or failed: its status and message (and problems, for 422)."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems


class ConsoleApi:
    def __init__(self, app: FastAPI, session: Session, remote: tuple[str, int]) -> None:
        self._transport = httpx.ASGITransport(app=app, client=remote)
        self._headers = {"authorization": f"Bearer {session.token}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: str | None = None,
        content_type: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        headers = dict(self._headers)
        if content_type:
            headers["content-type"] = content_type
        async with httpx.AsyncClient(transport=self._transport, base_url="http://console") as c:
            resp = await c.request(
                method, API + path, json=json, content=content, params=params, headers=headers
            )
        if resp.status_code >= 400:
            raise failure(resp)
        return resp.json() if resp.content else {}

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, params={k: v for k, v in params.items() if v})

    async def probe(self, path: str) -> Any:
        """An unauthenticated admin path (``/readyz``): its JSON whatever the status."""
        async with httpx.AsyncClient(transport=self._transport, base_url="http://console") as c:
            resp = await c.get(path)
        return resp.json()

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.call("POST", path, json=body)


def failure(resp: httpx.Response) -> ApiFailure:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or body.get("detail") or resp.reason_phrase)
    problems = body.get("problems") or []
    return ApiFailure(resp.status_code, message, problems if isinstance(problems, list) else [])
