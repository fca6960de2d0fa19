"""TLS for the admin listener, and the rule about where it may bind without it.

The admin listener carries bearer tokens, Secrets on their way in and tunnels, so:

- TLS material comes, as for Gateway listeners, from PEM files (``--admin-tls-cert`` and
  ``--admin-tls-key``) or from a ``kubernetes.io/tls`` Secret (``--admin-tls-secret
  NAMESPACE/NAME``, looked up in the configuration the gateway starts with: manifests
  and the store). The pair is checked (``config.tls.check_pair``) and loaded at start.
  Files are polled (``watch_files``): a renewed pair is checked and loaded into the same
  context, so new connections get it and open ones are untouched; a broken renewal is
  logged and the old pair keeps serving. A Secret's pair changes with a restart.
- Without TLS the listener binds only to a loopback address. A wider bind (``0.0.0.0``,
  a LAN address, a host name) is refused at start unless ``--admin-allow-insecure`` says
  the operator accepts it (a TLS-terminating sidecar, a private network); then a WARNING
  names the risk at every start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from turnout.config.configset import ConfigSet
from turnout.config.tls import TLSMaterialError, check_pair
from turnout.proxy.routing.tls import load_pem_pair

log = logging.getLogger("turnout.supervisor")


class AdminTLSError(ValueError):
    """The admin listener's TLS settings cannot be used (the message says how to fix)."""


@dataclass(frozen=True, slots=True)
class AdminTLSOptions:
    cert_file: str = ""
    key_file: str = ""
    secret: str = ""  # "namespace/name" (or "name": namespace "default")
    allow_insecure: bool = False

    @property
    def wanted(self) -> bool:
        return bool(self.cert_file or self.key_file or self.secret)


def is_loopback_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # "" (all interfaces) and host names may reach beyond this machine


def admin_context(opts: AdminTLSOptions, config: ConfigSet) -> ssl.SSLContext | None:
    """The admin listener's server context, or ``None`` when no TLS is configured."""
    if not opts.wanted:
        return None
    cert_pem, key_pem, source = _material(opts, config)
    try:
        check_pair(cert_pem, key_pem, source)
    except TLSMaterialError as exc:
        raise AdminTLSError(f"admin TLS: {exc}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        load_pem_pair(ctx, cert_pem, key_pem)
    except ssl.SSLError as exc:
        raise AdminTLSError(f"admin TLS: OpenSSL refuses {source}: {exc}") from None
    return ctx


def _stamp(opts: AdminTLSOptions) -> tuple[tuple[int, int, int] | None, ...]:
    out: list[tuple[int, int, int] | None] = []
    for name in (opts.cert_file, opts.key_file):
        try:
            st = os.stat(Path(name).expanduser())  # follows symlinks, as renewals swap them
        except OSError:
            out.append(None)
            continue
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


async def watch_files(
    ctx: ssl.SSLContext, opts: AdminTLSOptions, stopping: Callable[[], bool], interval: float
) -> None:
    """Reload the admin certificate files into ``ctx`` when they change (module doc)."""
    if opts.secret or not opts.cert_file:
        return
    seen = _stamp(opts)
    while not stopping():
        await asyncio.sleep(interval)
        now = _stamp(opts)
        if now == seen:
            continue
        seen = now
        try:
            cert_pem, key_pem, source = _material(opts, _NO_CONFIG)
            check_pair(cert_pem, key_pem, source)
            load_pem_pair(ctx, cert_pem, key_pem)
        except (AdminTLSError, TLSMaterialError, ssl.SSLError) as exc:
            log.warning("admin TLS: keeping the current certificate: %s", exc)
            continue
        log.info("admin TLS: certificate reloaded from %s", source)


_NO_CONFIG = ConfigSet()


def _material(opts: AdminTLSOptions, config: ConfigSet) -> tuple[bytes, bytes, str]:
    if opts.secret:
        if opts.cert_file or opts.key_file:
            raise AdminTLSError(
                "admin TLS: give --admin-tls-secret or --admin-tls-cert/--admin-tls-key, not both"
            )
        return _from_secret(opts.secret, config)
    if not (opts.cert_file and opts.key_file):
        missing = "--admin-tls-key" if opts.cert_file else "--admin-tls-cert"
        raise AdminTLSError(f"admin TLS: {missing} is missing (both files are needed)")
    out: list[bytes] = []
    for flag, name in (("--admin-tls-cert", opts.cert_file), ("--admin-tls-key", opts.key_file)):
        path = Path(name).expanduser()
        try:
            out.append(path.read_bytes())
        except OSError as exc:
            raise AdminTLSError(f"admin TLS: cannot read {path} ({flag}): {exc.strerror}") from None
    return out[0], out[1], opts.cert_file


def _from_secret(ref: str, config: ConfigSet) -> tuple[bytes, bytes, str]:
    namespace, _, name = ref.rpartition("/")
    key = (namespace or "default", name)
    where = f"Secret {key[0]}/{key[1]}"
    secret = config.secrets().get(key)
    if secret is None:
        raise AdminTLSError(
            f"admin TLS: {where} (--admin-tls-secret) is not in the manifests or the store"
        )
    values: list[bytes] = []
    for field in ("tls.crt", "tls.key"):
        if field in secret.string_data:
            values.append(secret.string_data[field].encode())
            continue
        raw = secret.data.get(field)
        if raw is None:
            raise AdminTLSError(f"admin TLS: {where} has no {field}")
        try:
            values.append(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError):
            raise AdminTLSError(f"admin TLS: {where}: data.{field} is not valid base64") from None
    return values[0], values[1], where


def exposure_warning(host: str, tls: bool, allow_insecure: bool) -> str | None:
    """``None`` when the bind is fine; the WARNING text when allowed insecurely;
    ``AdminTLSError`` when a non-loopback bind has neither TLS nor the override."""
    if tls or is_loopback_host(host):
        return None
    shown = host or "all interfaces"
    if not allow_insecure:
        raise AdminTLSError(
            f"the admin address binds {shown}, beyond loopback, without TLS: admin tokens, "
            "Secrets and tunnels would cross the network in clear. Give it a certificate "
            "(--admin-tls-cert/--admin-tls-key or --admin-tls-secret), bind 127.0.0.1, or "
            "pass --admin-allow-insecure if something else protects it"
        )
    return (
        f"the admin API listens on {shown} WITHOUT TLS (--admin-allow-insecure): anyone "
        "on the network path can read admin tokens, Secrets and tunnel traffic"
    )
