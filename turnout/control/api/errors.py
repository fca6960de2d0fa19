"""Every API error has one shape: ``{"status": "Failure", "code", "reason", "message"}``.

422 responses add ``problems`` (source, line, column, field path, message); 401 adds a
``WWW-Authenticate: Bearer`` header; 503 (store unreachable) adds ``Retry-After``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from turnout.control.objects import problem_json
from turnout.control.service import AuthError, OwnedByFile
from turnout.control.store.errors import Conflict, Invalid, NotFound, StoreUnavailable
from turnout.control.store.sealing import SecretsKeyError

log = logging.getLogger("turnout.control")

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    503: "ServiceUnavailable",
}


class ProblemModel(BaseModel):
    source: str
    line: int | None = None
    column: int | None = None
    path: str
    message: str
    object: str = ""
    severity: str = "error"


class Failure(BaseModel):
    """The body of every error response."""

    status: str = "Failure"
    code: int
    reason: str
    message: str
    problems: list[ProblemModel] | None = None


FAILURES: dict[int | str, dict[str, Any]] = {
    code: {"model": Failure, "description": REASONS[code]}
    for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}


class ApiError(Exception):
    def __init__(self, code: int, message: str, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = problems


def failure(
    code: int,
    message: str,
    problems: list[Any] | None = None,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "status": "Failure",
        "code": code,
        "reason": reason or REASONS.get(code, "Error"),
        "message": message,
    }
    if problems is not None:
        body["problems"] = [problem_json(p) if not isinstance(p, dict) else p for p in problems]
    return JSONResponse(body, status_code=code, headers=headers)


def _one_line(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "invalid request: " + "; ".join(parts)


def _allowed(app: FastAPI, request: Request) -> set[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return failure(exc.code, exc.message, exc.problems)

    async def auth_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        headers = {"WWW-Authenticate": 'Bearer realm="turnout"'} if exc.status == 401 else None
        return failure(exc.status, str(exc), headers=headers)

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        reason = "OwnedByFile" if isinstance(exc, OwnedByFile) else "Conflict"
        return failure(409, str(exc), reason=reason)

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return failure(404, str(exc))

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Invalid)
        n = len(exc.problems)
        return failure(422, f"{n} validation error(s); nothing was changed", exc.problems)

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        return failure(
            503,
            f"the store is unavailable: {exc}",
            reason="StoreUnavailable",
            headers={"Retry-After": "1"},
        )

    async def secrets_key(_: Request, exc: Exception) -> JSONResponse:
        # Another replica sealed Secrets with a key this one lacks (a rotation that did
        # not reach every replica's key file): say so, not "internal error".
        log.error("admin API: %s", exc)
        return failure(503, str(exc), reason="SecretsKeyMissing")

    async def bad_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        for err in exc.errors():
            if tuple(err.get("loc", ())) == ("path", "plural"):
                plural = err.get("input")
                return failure(404, f"unknown resource type {plural!r} at this path")
        return failure(400, _one_line(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; list them all.
            headers = {"Allow": ", ".join(sorted(_allowed(app, request)))}
        return failure(exc.status_code, str(exc.detail), headers=headers)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("admin API: unexpected error", exc_info=exc)
        return failure(500, "internal error (logged on the server)", reason="InternalError")

    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(AuthError, auth_error)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(OwnedByFile, conflict)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(Invalid, invalid)
    app.add_exception_handler(StoreUnavailable, unavailable)
    app.add_exception_handler(SecretsKeyError, secrets_key)
    app.add_exception_handler(RequestValidationError, bad_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
