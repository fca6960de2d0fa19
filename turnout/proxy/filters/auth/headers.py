"""Response headers a SecurityPolicy sets: security headers and CORS answers.

``responseHeaders`` compiles once into a list of ``(name, value)``: HSTS
(``Strict-Transport-Security: max-age=N[; includeSubDomains][; preload]``),
``X-Frame-Options``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy`` and
``Content-Security-Policy``. A ``ResponseHeaders`` *sets* them on a response: the
upstream's own values of those names are replaced (``Vary`` is appended to instead).
"""

from __future__ import annotations

from typing import Final

from turnout.config.model.security import SecurityHeadersSpec, parse_long_duration
from turnout.proxy.protocols.heads import Headers

_APPENDED: Final = frozenset({b"vary"})


def security_headers(spec: SecurityHeadersSpec | None) -> Headers:
    if spec is None:
        return []
    out: Headers = []
    hsts = spec.hsts
    if hsts is not None:
        value = b"max-age=%d" % int(parse_long_duration(hsts.max_age))
        if hsts.include_sub_domains:
            value += b"; includeSubDomains"
        if hsts.preload:
            value += b"; preload"
        out.append((b"strict-transport-security", value))
    if spec.frame_options is not None:
        out.append((b"x-frame-options", spec.frame_options.encode()))
    if spec.content_type_options:
        out.append((b"x-content-type-options", b"nosniff"))
    if spec.referrer_policy is not None:
        out.append((b"referrer-policy", spec.referrer_policy.encode()))
    if spec.content_security_policy is not None:
        out.append((b"content-security-policy", spec.content_security_policy.encode()))
    return out


class ResponseHeaders:
    """Headers to set on one response (shared between requests when static)."""

    __slots__ = ("headers", "names")

    def __init__(self, headers: Headers) -> None:
        self.headers = headers
        self.names = frozenset(n for n, _ in headers if n not in _APPENDED)

    def apply(self, headers: Headers) -> Headers:
        names = self.names
        if names and any(n in names for n, _ in headers):
            headers = [h for h in headers if h[0] not in names]
        headers.extend(self.headers)
        return headers
