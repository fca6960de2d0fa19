"""ASGI middleware: each HTTP request and WebSocket connection runs in the propagation
context its headers carry.

    app = PropagationMiddleware(app)

Wrap the outermost application (outside every other middleware), so that everything the
request runs, including tasks other middleware starts (Starlette's
``BaseHTTPMiddleware`` runs the endpoint in a task of its own), sees the context:
tasks copy the context current when they are created. ``lifespan`` and any other scope
type pass through untouched. Pure ASGI, no framework needed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from turnout.propagation.context import extract, use

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_SCOPES: Final = frozenset({"http", "websocket"})


class PropagationMiddleware:
    """Runs ``app`` inside the propagation context extracted from the scope's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _REQUEST_SCOPES:
            await self.app(scope, receive, send)
            return
        # The ASGI server awaits this call in the task serving the request, so setting
        # the variable here and resetting it on the way out stays within the request.
        with use(extract(scope.get("headers") or ())):
            await self.app(scope, receive, send)
