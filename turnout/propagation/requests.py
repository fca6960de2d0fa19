"""requests integration: a ``requests.Session`` whose every request carries the
propagation headers.

    session = requests.Session()
    install(session)

requests has no hook that runs before a request is sent (``session.hooks`` only knows
``response``), and overriding ``Session.prepare_request`` misses requests prepared
elsewhere (``requests.Request(...).prepare()``) and handed to ``Session.send``. Every
request, redirects included, reaches the transport adapter's ``send``, in the calling
thread, where the request's context is current; so
:func:`install` wraps each adapter mounted on the session in a
:class:`PropagatingAdapter` that injects into the prepared request's headers and
delegates to the original adapter, keeping its settings (retries, pool sizes).

Adapters mounted after :func:`install` are not wrapped: mount
``PropagatingAdapter(adapter)`` instead, or call :func:`install` again.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests
from requests.adapters import BaseAdapter

from turnout.propagation.context import inject


class PropagatingAdapter(BaseAdapter):
    """Injects the propagation headers, then sends through ``inner``."""

    def __init__(self, inner: BaseAdapter) -> None:
        super().__init__()
        self.inner = inner

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        inject(request.headers)
        return self.inner.send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )

    def close(self) -> None:
        self.inner.close()


def install(session: requests.Session) -> requests.Session:
    """Wrap every adapter mounted on ``session`` (idempotent); returns ``session``."""
    for prefix, adapter in list(session.adapters.items()):
        if not isinstance(adapter, PropagatingAdapter):
            # Assigning to an existing prefix keeps the longest-prefix-first order
            # that Session.mount maintains.
            session.adapters[prefix] = PropagatingAdapter(adapter)
    return session
