"""Request dependencies: the control plane, the caller (token → ``Principal``), the role check.

``require(role)`` authenticates the bearer token and checks the role; a refusal is
audited (who, what, from where) before the 401/403 is raised. The ``HTTPBearer`` scheme
is declared so the OpenAPI document says how to authenticate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from turnout.control.auth import Principal, Role
from turnout.control.service import AuthError, ControlPlane

bearer = HTTPBearer(auto_error=False, description="an admin token: tnt_<id>_<secret>")


def control_of(request: Request) -> ControlPlane:
    control: ControlPlane = request.app.state.control
    return control


def remote_of(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else ""


def target_of(request: Request) -> str:
    return f"{request.method} {request.url.path}"


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        control = control_of(request)
        principal = await control.authenticate(
            request.headers.get("authorization"), remote_of(request), target_of(request)
        )
        if not principal.may(role):
            message = (
                f"token {principal.name!r} has role {principal.role.label}; this needs {role.label}"
            )
            await control.audit(
                principal, "auth", "forbidden", target_of(request), message, remote_of(request)
            )
            raise AuthError(403, message)
        request.state.principal = principal
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Editor = Annotated[Principal, Depends(require(Role.EDITOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Control = Annotated[ControlPlane, Depends(control_of)]


async def forbid(
    control: ControlPlane, request: Request, principal: Principal, message: str
) -> None:
    await control.audit(
        principal, "auth", "forbidden", target_of(request), message, remote_of(request)
    )
    raise AuthError(403, message)
