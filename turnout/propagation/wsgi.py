"""WSGI middleware: each request runs in the propagation context its headers carry.

    app = PropagationMiddleware(app)

WSGI hands headers over as ``HTTP_*`` environ keys (``HTTP_X_TURNOUT_ROUTING_KEY``);
they are turned back into header names before extraction. An application may return
a generator whose body runs only while the server iterates it, after the call has
returned, so the call, every step of the iteration and ``close()`` all run in one
:class:`contextvars.Context` made for the request. That context is a copy of the
server thread's, so whatever the application sets in it never leaks into the server's
thread or the next request it serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from turnout.propagation.context import IteratorInContext, bound_context, extract


def _headers(environ: WSGIEnvironment) -> Iterator[tuple[str, str]]:
    for name, value in environ.items():
        if name.startswith("HTTP_") and isinstance(value, str):
            yield name[5:].replace("_", "-").lower(), value


class PropagationMiddleware:
    """Runs ``app`` inside the propagation context extracted from the environ."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        context = bound_context(extract(_headers(environ)))
        result = context.run(self.app, environ, start_response)
        if isinstance(result, (list, tuple)):
            return result  # nothing left to run; keeps the server's fast paths
        return IteratorInContext(context, result)
