"""One HTTP/1.1 request from a test to a gateway or an upstream, with the reply read whole.

``get(port, "/path")`` and ``request(port, "/path", method=..., headers=..., body=...)``
open a connection to ``127.0.0.1`` (or ``host``), send one request, read the response
and close, unless the caller passes its own ``conn`` (keep-alive tests). The ``Reply``
holds the status, the headers by lowercase name (the last value of a repeated field;
``reply.response.getheaders()`` has them all) and the body bytes, with ``json()`` for
JSON bodies. Plain ``http.client`` on purpose: it adds nothing to what the test sends.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # lowercase names; the last value of a repeated field
    body: bytes
    response: http.client.HTTPResponse  # read already: for getheader()/getheaders()

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def is_json(self) -> bool:
        return self.content_type == "application/json"

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    path: str = "/",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
    conn: http.client.HTTPConnection | None = None,
) -> Reply:
    """Send one request and read the reply; closes the connection unless ``conn`` is
    the caller's."""
    c = conn or http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        resp = c.getresponse()
        raw = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw, resp)
    finally:
        if conn is None:
            c.close()


def get(
    port: int,
    path: str = "/",
    headers: dict[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
    conn: http.client.HTTPConnection | None = None,
) -> Reply:
    """``GET path`` on ``host:port``."""
    return request(port, path, headers=headers, host=host, timeout=timeout, conn=conn)
