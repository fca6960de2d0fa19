"""The console's plumbing: templates, security headers, sessions, login and logout.

Pages render on the server (Jinja2, autoescaped); the browser runs only the static
files under ``/ui/static`` (htmx, ECharts and ``console.js``), which a strict
Content-Security-Policy enforces (``script-src 'self'``: no inline script at all).
``Console.session`` finds the caller's session for a page (no session: to the login
page) and ``Console.writer`` also checks the CSRF token of a write.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData

from turnout.control.auth import Role
from turnout.control.console.client import ApiFailure, ConsoleApi
from turnout.control.console.live import LiveRates
from turnout.control.console.sessions import DEFAULT_TTL, Session, SessionStore
from turnout.control.service import ControlPlane

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR_FILES = ("htmx.min.js", "echarts.min.js")
COOKIE = "turnout_session"
MAX_FORM = 4 * 1024 * 1024  # an object's YAML in an edit form
MAX_LOGIN = 8 * 1024
CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    # ECharts positions its tooltip with style attributes
    "style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
MISSING = (
    "The web console's browser libraries (htmx, ECharts) are not installed: this is a "
    "source checkout installed without npm. Install Node.js/npm, then run `npm ci` in the "
    "source tree and reinstall (TURNOUT_COMPILE=0 pip install -e .), or install a wheel. "
    "See docs/console.md."
)


class LoginRequired(Exception):
    pass


class CsrfRefused(Exception):
    pass


def _when(at: float | str | None) -> str:
    """Epoch seconds (the run timeline's clock) as UTC time; text passes through."""
    if isinstance(at, int | float):
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return at or ""


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


class Console:
    def __init__(
        self,
        app: FastAPI,
        control: ControlPlane,
        scrape: Callable[[], str],
        vendor: Path = STATIC / "vendor",
        clock: Callable[[], float] = time.monotonic,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        self.app = app
        self.control = control
        self.sessions = SessionStore(clock, ttl)
        self.live = LiveRates(scrape)
        self.ready = all((vendor / name).is_file() for name in VENDOR_FILES)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # the templates ship with the package: no stat per page
        )
        self.env.filters["ms"] = _ms
        self.env.globals["health_of"] = health_of
        self.env.globals["ejected_of"] = ejected_of
        self.env.filters["when"] = _when
        self.env.filters["pct"] = lambda x: "-" if math.isnan(x) else f"{x * 100:.1f}"

    # -- sessions ---------------------------------------------------------------------

    def session(self, request: Request) -> Session:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            raise LoginRequired()
        return session

    async def writer(self, request: Request) -> tuple[Session, FormData]:
        """The session of a write whose CSRF token matches (form field or header)."""
        session = self.session(request)
        form = await read_form(request, MAX_FORM)
        given = request.headers.get("x-csrf-token") or str(form.get("csrf") or "")
        if not session.csrf_ok(given) or not same_origin(request):
            await self.control.audit(
                session.principal, "console", "forbidden", f"{request.method} {request.url.path}",
                "missing or wrong CSRF token, or another site's Origin", remote(request),
            )  # fmt: skip
            raise CsrfRefused()
        return session, form

    def api(self, request: Request, session: Session) -> ConsoleApi:
        client = request.client
        return ConsoleApi(self.app, session, (client.host, client.port) if client else ("", 0))

    # -- responses --------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        principal = session.principal if session else None
        html = self.env.get_template(template).render(
            request=request,
            session=session,
            principal=principal,
            csrf=session.csrf if session else "",
            can_write=bool(principal and principal.may(Role.EDITOR)),
            is_admin=bool(principal and principal.may(Role.ADMIN)),
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def unavailable(self) -> Response:
        return Response(MISSING + "\n", status_code=503, media_type="text/plain", headers=HEADERS)


def health_of(status: dict[str, Any], backend: str, address: str) -> str:
    """An endpoint's active health check verdict from ``/api/v1/status``."""
    for key, probe in (status.get("health") or {}).items():
        if key.endswith(address) and (not probe.get("backend") or probe["backend"] == backend):
            if probe.get("healthy"):
                return "healthy"
            return f"unhealthy: {probe.get('lastError') or 'failing checks'}"
    return "unchecked"


def ejected_of(status: dict[str, Any], backend: str, address: str) -> str:
    """How long passive outlier detection keeps an endpoint out ("" when it is in)."""
    left = (status.get("ejections") or {}).get(address)
    return f"ejected, {left:.0f} s left" if left else ""


async def read_form(request: Request, limit: int) -> FormData:
    """The posted form, refused (413) unless it declares a length within ``limit``.

    Browsers send Content-Length with every form; the bound keeps an unauthenticated
    login post, or a runaway edit, from being read into memory whole.
    """
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > limit:
        raise ApiFailure(413, f"a console form is at most {limit} bytes, with Content-Length", [])
    return await request.form()


def same_origin(request: Request) -> bool:
    """A browser's write comes from our own pages: its ``Origin`` (when sent) is our host.

    Defence in depth beside the CSRF token and SameSite=Strict; it also stops a login
    form on another site from logging a victim into the attacker's session.
    """
    origin = request.headers.get("origin")
    if not origin:  # not sent by every browser for same-origin form posts
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def remote(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else ""


def back(to: str, **query: str) -> RedirectResponse:
    """After a write: 303 to the page that shows its effect (POST/redirect/GET)."""
    q = urlencode({k: v for k, v in query.items() if v})
    return RedirectResponse(f"{to}?{q}" if q else to, status_code=303, headers=HEADERS)
