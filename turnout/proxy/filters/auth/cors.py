"""CORS, answered by the gateway (the Fetch standard's CORS protocol).

- A *preflight* (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
  answered here with 204, before authentication: browsers send no credentials on a
  preflight. An allowed origin gets ``Access-Control-Allow-Origin``, ``-Methods``,
  ``-Headers``, ``-Max-Age`` and ``-Credentials``; any other origin gets a 204 with no
  CORS headers, which the browser treats as a refusal.
- An *actual* request from an allowed origin gets ``Access-Control-Allow-Origin`` (the
  request's own origin, or ``*`` only for ``allowOrigins: ["*"]`` without credentials),
  ``-Credentials`` and ``-Expose-Headers`` on its response; other origins get no CORS
  headers. ``Vary: Origin`` is added whenever the answer depends on the origin, so
  caches keep the variants apart.

Origins compare case-insensitively; ``https://*.example.com`` matches any strict
subdomain (``a.example.com``, ``a.b.example.com``) with that scheme and port, not
``example.com`` itself.
"""

from __future__ import annotations

from typing import Final

from turnout.config.model.security import CORSSpec
from turnout.config.security import parse_origin
from turnout.core.durations import parse_duration
from turnout.proxy.protocols.heads import Headers, RequestHead

ALLOW_ORIGIN: Final = b"access-control-allow-origin"
ALLOW_CREDENTIALS: Final = b"access-control-allow-credentials"
ALLOW_METHODS: Final = b"access-control-allow-methods"
ALLOW_HEADERS: Final = b"access-control-allow-headers"
EXPOSE_HEADERS: Final = b"access-control-expose-headers"
MAX_AGE: Final = b"access-control-max-age"
VARY: Final = b"vary"
_PREFLIGHT_VARY: Final = (
    VARY,
    b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
)
_DEFAULT_METHODS: Final = b"GET, HEAD, POST"


class CORSPolicy:
    __slots__ = (
        "any",
        "credentials",
        "echo_headers",
        "echo_methods",
        "exact",
        "expose",
        "headers",
        "max_age",
        "methods",
        "vary",
        "wildcards",
    )

    def __init__(self, spec: CORSSpec) -> None:
        patterns = [parse_origin(o) for o in spec.allow_origins]
        self.any = any(p.any for p in patterns)
        self.exact = frozenset(p.exact for p in patterns if p.exact)
        self.wildcards = tuple(p for p in patterns if not p.any and not p.exact)
        self.credentials = spec.allow_credentials
        self.echo_methods = "*" in spec.allow_methods
        self.methods = ", ".join(m for m in spec.allow_methods if m != "*").encode()
        if not self.methods and not self.echo_methods:
            self.methods = _DEFAULT_METHODS
        self.echo_headers = "*" in spec.allow_headers
        self.headers = ", ".join(h for h in spec.allow_headers if h != "*").encode()
        self.expose = ", ".join(spec.expose_headers).encode()
        self.max_age = (
            str(int(parse_duration(spec.max_age))).encode() if spec.max_age is not None else b""
        )
        # "*" without credentials is the same answer for everyone; anything else varies
        self.vary = not (self.any and not self.credentials)

    def allows(self, origin: bytes) -> bool:
        if self.any:
            return True
        text = origin.decode("latin-1").lower()
        if text in self.exact:
            return True
        return any(p.matches(text) for p in self.wildcards)

    def _allow_origin(self, origin: bytes) -> bytes:
        return b"*" if self.any and not self.credentials else origin

    def preflight(self, origin: bytes, head: RequestHead) -> Headers:
        """The headers of the 204 answering a preflight."""
        if not self.allows(origin):
            return [_PREFLIGHT_VARY]
        out: Headers = [(ALLOW_ORIGIN, self._allow_origin(origin))]
        if self.credentials:
            out.append((ALLOW_CREDENTIALS, b"true"))
        methods = self.methods
        if self.echo_methods:
            asked = head.received.get(b"access-control-request-method", b"")
            methods = b", ".join(m for m in (methods, asked.strip()) if m)
        if methods:
            out.append((ALLOW_METHODS, methods))
        headers = self.headers
        if self.echo_headers:
            asked = head.received.get(b"access-control-request-headers", b"")
            headers = b", ".join(h for h in (headers, asked.strip()) if h)
        if headers:
            out.append((ALLOW_HEADERS, headers))
        if self.max_age:
            out.append((MAX_AGE, self.max_age))
        out.append(_PREFLIGHT_VARY)
        return out

    def actual(self, origin: bytes | None) -> Headers:
        """The headers to set on the response to a (non-preflight) request."""
        out: Headers = []
        if origin is not None and self.allows(origin):
            out.append((ALLOW_ORIGIN, self._allow_origin(origin)))
            if self.credentials:
                out.append((ALLOW_CREDENTIALS, b"true"))
            if self.expose:
                out.append((EXPOSE_HEADERS, self.expose))
        if self.vary:
            out.append((VARY, b"Origin"))
        return out
