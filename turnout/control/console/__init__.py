"""The web console under ``/ui`` of the admin app: server-rendered pages over the admin API.

``mount_console`` adds the pages (``pages``), the writes (``actions``) and the static
files (htmx, ECharts, ``console.js``) to the FastAPI admin app. The console is a client
of the API in the same process (``client``): it logs in with an admin token, keeps it
server-side behind a session cookie (``sessions``), and sends every read and write as
an ``/api/v1`` request with that token. When the browser libraries were not copied in
at build time (an editable install without npm), every ``/ui`` path answers 503 naming
the fix; the API and the gateway are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from turnout.control.console.client import ApiFailure
from turnout.control.console.web import (
    HEADERS,
    STATIC,
    Console,
    CsrfRefused,
    LoginRequired,
)
from turnout.control.service import ControlPlane

__all__ = ["Console", "mount_console"]


class _Static(StaticFiles):
    """Static files with a strict CSP too, cached an hour (the names change with a release)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        resp = await super().get_response(path, scope)
        resp.headers["cache-control"] = "public, max-age=3600"
        resp.headers["x-content-type-options"] = "nosniff"
        return resp


def mount_console(
    app: FastAPI,
    control: ControlPlane,
    scrape: Callable[[], str],
    vendor: Path | None = None,
) -> Console:
    from turnout.control.console import actions, pages

    console = Console(app, control, scrape, vendor or STATIC / "vendor")
    app.state.console = console
    if not console.ready:

        async def unavailable(rest: str = "") -> Response:
            return console.unavailable()

        for path in ("/ui", "/ui/{rest:path}"):
            app.add_api_route(path, unavailable, methods=["GET", "POST"], include_in_schema=False)
        return console

    async def login_required(request: Request, _: Exception) -> Response:
        if request.url.path.startswith("/ui/live/") or request.method != "GET":
            return PlainTextResponse("log in first: /ui/login", status_code=401, headers=HEADERS)
        return RedirectResponse("/ui/login", status_code=303, headers=HEADERS)

    async def csrf_refused(request: Request, _: Exception) -> Response:
        session = console.sessions.get(request.cookies.get("turnout_session"))
        return console.render(
            request, "error.html", session, status=403,
            message="refused: the form's CSRF token is missing or wrong (reload the page)",
        )  # fmt: skip

    async def api_failure(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiFailure)
        session = console.sessions.get(request.cookies.get("turnout_session"))
        return console.render(
            request, "error.html", session, status=exc.status, message=exc.message
        )

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    app.add_exception_handler(ApiFailure, api_failure)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount("/ui/static", _Static(directory=STATIC), name="console-static")
    return console
