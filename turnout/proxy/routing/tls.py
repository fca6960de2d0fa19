"""TLS on a listening socket: one ``ssl.SSLContext`` per HTTPS listener, chosen by SNI.

Every HTTPS listener gets its own context (its certificates, TLS policy, ALPN), and
a ``TlsTable`` maps the SNI server name to a listener the way the Gateway API maps
hostnames: exact name, then the longest matching wildcard, then the listener without a
hostname. The socket's server keeps one long-lived context whose ``sni_callback`` asks
the *current* snapshot's table and swaps the connection onto the chosen listener's
context, so a reload (new certificates included) applies to every new handshake while
established connections keep theirs.

After the handshake, ``ssl_object.context`` says which listener the client reached; a
request whose Host selects a different listener on the same socket is misdirected
(421), as the Gateway API requires, since the certificate it was offered may not cover
that host.

Each listener's context carries its TLS 1.2 cipher suites (AEAD only by default) and
minimum version. The SNI swap applies the chosen context's cipher list, but OpenSSL picks
the protocol version before SNI is seen, with the socket's context: that one requires
TLS 1.3 when every listener of the port does (the worker makes a new server when this
changes), else TLS 1.2, and a TLS 1.2 handshake that selects a TLS 1.3-only listener is
refused right after it completes, before any request is read (``handshake_identity``).

``ssl`` loads certificates only from files, so the PEM bytes from Secrets are written to
a private temporary file for the duration of one ``load_cert_chain`` call.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, Final

from turnout.config.tls import Certificate, TLSPolicy
from turnout.proxy.routing.build import build_host_index
from turnout.proxy.routing.table import HostIndex

ListenerId = tuple[str, str]  # (gateway "ns/name", listener name)
ALPN_HTTP1: Final = ("http/1.1",)
DEFAULT_POLICY: Final = TLSPolicy()


def server_context(
    certs: Sequence[Certificate], alpn: Sequence[str], policy: TLSPolicy = DEFAULT_POLICY
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if policy.tls13_only else ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.set_ciphers(policy.ciphers)  # TLS 1.2 only; TLS 1.3's suites are all AEAD
    except ssl.SSLError as exc:
        raise CipherStringError(
            f"OpenSSL refuses the cipher string {policy.ciphers!r}: {exc}"
        ) from None
    ctx.set_alpn_protocols(list(alpn))
    for cert in certs:
        load_pem_pair(ctx, cert.cert_pem, cert.key_pem)
    return ctx


class CipherStringError(ValueError):
    """A listener's ``turnout.dev/tls-ciphers`` that OpenSSL selects no suite from."""

    def __init__(self, message: str, listener: ListenerId | None = None) -> None:
        super().__init__(message)
        self.listener = listener  # set by the snapshot builder, to locate the error


def load_pem_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    fd, path = tempfile.mkstemp(prefix="turnout-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp: 0600, private to this user
            f.write(key_pem.rstrip(b"\n") + b"\n" + cert_pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


class TlsTable:
    """The HTTPS listeners of one socket, by SNI, and which require client certificates."""

    __slots__ = ("by_context", "by_name", "default", "required", "tls13_only")

    def __init__(
        self,
        listeners: dict[str | None, tuple[ListenerId, ssl.SSLContext]],
        required: frozenset[ListenerId] = frozenset(),
    ) -> None:
        self.required = required  # frontendValidation AllowValidOnly
        # listener hostname (None: no hostname) -> (listener, its context)
        self.by_name: HostIndex[tuple[ListenerId, ssl.SSLContext]] = build_host_index(listeners)
        self.by_context: dict[int, ListenerId] = {id(c): lid for lid, c in listeners.values()}
        first = listeners.get(None) or next(iter(listeners.values()))
        self.default = first
        # Every listener requires TLS 1.3: the socket's own context can refuse TLS 1.2.
        self.tls13_only = all(
            c.minimum_version == ssl.TLSVersion.TLSv1_3 for _, c in listeners.values()
        )

    def select(self, server_name: str | None) -> tuple[ListenerId, ssl.SSLContext]:
        """The listener a client reaches with ``server_name`` (None: it sent no SNI)."""
        if server_name:
            hit = self.by_name.lookup(server_name.lower().rstrip("."))
            if hit is not None:
                return hit
        return self.default

    def listener_of(self, ctx: ssl.SSLContext) -> ListenerId | None:
        return self.by_context.get(id(ctx))


def socket_context(
    current: Callable[[], TlsTable | None],
    certs: Sequence[Certificate],
    alpn: Sequence[str],
    client_ca: bytes | None = None,
    tls13_only: bool = False,
) -> ssl.SSLContext:
    """The context a TLS socket's server is created with: it carries the first listener's
    certificates (what a client gets if the callback cannot decide) and an SNI callback
    that moves each handshake onto the listener's own context from ``current()``.

    Client certificates are asked for here when any listener of the socket validates
    them: when the SNI callback swaps contexts OpenSSL keeps the verify mode of the
    context the handshake started with (but verifies against the chosen context's trust
    store, so the snapshot gives every listener of the port the CAs). The socket's
    context requests a certificate (optional at this level) and the transport refuses a
    connection whose listener requires one it did not get."""
    base = server_context(certs, alpn, TLSPolicy(tls13_only=tls13_only))
    if client_ca:
        base.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
        base.verify_mode = ssl.CERT_OPTIONAL

    def choose(sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> int | None:
        table = current()
        if table is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sslobj.context = table.select(server_name)[1]
        return None

    base.sni_callback = choose
    return base


_SUBJECT_NAMES: Final = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
}


def handshake_identity(
    table: TlsTable | None, sslobj: ssl.SSLObject | None
) -> tuple[ListenerId | None, bytes | None, bool]:
    """After a handshake: the listener the SNI chose, an ``x-forwarded-client-cert`` value
    for a verified client certificate (Envoy's format: ``Hash=…;Subject="…";DNS=…``),
    and whether the connection must be refused (its listener requires a certificate, or
    TLS 1.3 and the handshake negotiated TLS 1.2)."""
    if table is None or sslobj is None:
        return None, None, False
    listener = table.listener_of(sslobj.context)
    if sslobj.context.minimum_version > ssl.TLSVersion.TLSv1_2 and sslobj.version() != "TLSv1.3":
        return listener, None, True  # a TLS 1.3-only listener (see the module docstring)
    der = sslobj.getpeercert(binary_form=True)
    if not der:
        return listener, None, listener in table.required
    info: Any = sslobj.getpeercert() or {}  # typeshed's dict type is too loose to use
    parts = [
        f"{_SUBJECT_NAMES.get(attr, attr)}={text}"
        for rdn in info.get("subject", ())
        for attr, text in rdn
    ]
    subject = ",".join(parts).replace('"', "'")
    header = f'Hash={hashlib.sha256(der).hexdigest()};Subject="{subject}"'
    for kind, dns in info.get("subjectAltName", ()):
        if kind == "DNS":
            header += f";DNS={dns}"
    return listener, header.encode("ascii", "replace"), False
