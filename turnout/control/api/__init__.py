"""The admin REST API under ``/api/v1`` (FastAPI routers over a ``ControlPlane``)."""

from __future__ import annotations

from fastapi import FastAPI

from turnout.control.api.errors import install_error_handlers
from turnout.control.service import ControlPlane


def mount_api(app: FastAPI, control: ControlPlane) -> None:
    from turnout.control.api import (
        alerts,
        apply,
        incidents,
        objects,
        release_queues,
        releases,
        revisions,
        tokens,
        trace,
        tunnels,
        watch,
    )

    app.state.control = control
    install_error_handlers(app)
    # objects last: its paths are generic
    routers = (
        tokens,
        revisions,
        apply,
        watch,
        trace,
        tunnels,
        alerts,
        incidents,
        release_queues,  # before releases: its promote-to is not one of their commands
        releases,
    )
    for module in (*routers, objects):
        app.include_router(module.router, prefix="/api/v1")
