"""Client-side TLS contexts for Backends with ``tls`` (see ``config.tls.UpstreamTLS``).

One context per distinct settings (by fingerprint), kept by the worker across reloads so
pooled connections and TLS session resumption survive them. Verification is on unless
the Backend says ``insecureSkipVerify``; TLS 1.2 is the minimum; the client certificate,
when given, makes it mutual TLS.
"""

from __future__ import annotations

import ssl

from turnout.config.tls import UpstreamTLS
from turnout.proxy.routing.tls import load_pem_pair


def client_context(tls: UpstreamTLS) -> ssl.SSLContext:
    if tls.ca_pem is not None:
        ctx = ssl.create_default_context(cadata=tls.ca_pem.decode("ascii", "replace"))
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.client is not None:
        load_pem_pair(ctx, tls.client.cert_pem, tls.client.key_pem)
    return ctx


class ContextCache:
    """Contexts by settings fingerprint (a handful per worker; never evicted)."""

    def __init__(self) -> None:
        self._contexts: dict[str, ssl.SSLContext] = {}

    def get(self, tls: UpstreamTLS) -> ssl.SSLContext:
        key = tls.fingerprint
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = client_context(tls)
        return ctx
