"""``RequestRedirect``: answer with a 3xx and a ``Location`` built from the request.

Defaults follow the Gateway API: scheme and host from the request; the port is the
well-known port of a changed scheme (80/443), else the listener's declared port; a
default port for the scheme is left out of ``Location``. The query string is kept.
"""

from __future__ import annotations

from turnout.config.model.routes import HTTPRequestRedirectFilter
from turnout.proxy.filters.base import FilterContext, LocalReply, RequestFilter, Verdict
from turnout.proxy.filters.rewrite import PathRewriter
from turnout.proxy.protocols.heads import RequestHead

_WELL_KNOWN = {b"http": 80, b"https": 443}


class Redirect:
    __slots__ = ("hostname", "path", "port", "scheme", "status")

    def __init__(self, spec: HTTPRequestRedirectFilter) -> None:
        self.scheme = spec.scheme.encode() if spec.scheme else None
        self.hostname = spec.hostname.encode() if spec.hostname else None
        self.port = spec.port
        self.path = PathRewriter(spec.path) if spec.path else None
        self.status = spec.status_code

    def location(
        self, head: RequestHead, scheme: bytes, listener_port: int, matched_prefix: bytes | None
    ) -> bytes:
        out_scheme = self.scheme or scheme
        host = self.hostname or head.host.encode()
        if not host:
            # HTTP/1.0 without Host: a relative reference is a valid Location (RFC 9110).
            path = self.path.rewrite(head.path, matched_prefix) if self.path else head.path
            return path + b"?" + head.query if head.query else path
        if self.port is not None:
            port = self.port
        elif self.scheme is not None:
            port = _WELL_KNOWN.get(self.scheme, listener_port)
        else:
            port = listener_port
        path = self.path.rewrite(head.path, matched_prefix) if self.path else head.path
        if head.query:
            path += b"?" + head.query
        if port == _WELL_KNOWN.get(out_scheme):
            return b"%s://%s%s" % (out_scheme, host, path)
        return b"%s://%s:%d%s" % (out_scheme, host, port, path)


class RedirectFilter(RequestFilter):
    """``RequestRedirect`` as a request filter: always answers locally."""

    __slots__ = ("redirect",)

    def __init__(self, redirect: Redirect) -> None:
        self.redirect = redirect

    def on_request(self, ctx: FilterContext) -> Verdict:
        redirect = self.redirect
        location = redirect.location(ctx.head, ctx.scheme, ctx.port, ctx.prefix)
        return LocalReply(redirect.status, b"", b"", [(b"location", location)])
