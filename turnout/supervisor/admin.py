"""The admin listener (FastAPI on uvicorn, inside the supervisor's loop).

Serves ``/metrics`` (Prometheus text format, aggregated over workers), ``/healthz``
(the supervisor's loop is alive) and ``/readyz`` (every worker runs the current
revision and the gateway is not draining), unauthenticated; and the control plane's
token-protected REST API under ``/api/v1`` (``turnout.control.api``), whose OpenAPI
document is ``/api/v1/openapi.json``; and the web console under ``/ui``
(``turnout.control.console``). It binds 127.0.0.1 unless told otherwise, and
speaks https when given a certificate (``admin_tls``: also where it may bind without one).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from turnout.control.api import mount_api
from turnout.control.console import mount_console
from turnout.control.releases.metrics import ReleaseCollector
from turnout.control.remediation.engine import remediation_breakers
from turnout.control.remediation.metrics import BreakerCollector
from turnout.control.service import ControlPlane
from turnout.observe.logring import LogRing
from turnout.observe.metrics import Aggregate, TurnoutCollector
from turnout.supervisor.cache import CacheSource, cache_router
from turnout.supervisor.explain import ExplainSource, explain_router
from turnout.supervisor.logs import logs_router


class AdminSource(Protocol):
    def aggregate(self) -> Aggregate: ...
    def status(self) -> dict[str, Any]: ...


def create_app(source: AdminSource, control: ControlPlane | None = None) -> FastAPI:
    app = FastAPI(
        title="Turnout admin API",
        version="v1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TurnoutCollector(source))
    if control is not None:
        registry.register(BreakerCollector(lambda: remediation_breakers(control)))
        registry.register(ReleaseCollector(lambda: control.stored.values()))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        status = source.status()
        return JSONResponse(status, status_code=200 if status["ready"] else 503)

    if control is not None:
        # before the control plane's routers: their generic /{plural} paths would shadow it
        if isinstance(source, ExplainSource):
            app.include_router(explain_router(source), prefix="/api/v1")
        if isinstance(source, CacheSource):
            app.include_router(cache_router(source), prefix="/api/v1")
        ring = getattr(source, "logs", None)
        if isinstance(ring, LogRing):
            app.include_router(logs_router(ring), prefix="/api/v1")
        mount_api(app, control)
        mount_console(app, control, lambda: generate_latest(registry).decode())
    return app


class _AdminServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The supervisor owns signal handling; uvicorn must not install its own.
        yield


def make_server(
    source: AdminSource,
    sock: socket.socket,
    control: ControlPlane | None = None,
    tls: ssl.SSLContext | None = None,
) -> _AdminServer:
    """The admin server on ``sock``; https with ``tls`` (see ``admin_tls``)."""
    factory = None if tls is None else (lambda _config, _default: tls)
    config = uvicorn.Config(
        create_app(source, control),
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="none",
        timeout_graceful_shutdown=2,
        ssl_context_factory=factory,
    )
    return _AdminServer(config)
