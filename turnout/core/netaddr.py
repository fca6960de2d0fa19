"""Parsing of ``host:port`` style addresses used in manifests and flags.

Accepted forms: ``host:port``, ``1.2.3.4:port``, ``[::1]:port``, ``unix:/path/to.sock``,
and, where a default port is available, a bare ``host`` or ``[::1]``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

_HOSTNAME: Final = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


class AddressError(ValueError):
    """An address that cannot be used."""


@dataclass(frozen=True, slots=True)
class Address:
    """A TCP ``host``/``port`` pair or a unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_address(
    text: str, default_port: int | None = None, *, allow_missing_port: bool = False
) -> Address:
    """Parse ``text``; a missing port takes ``default_port``, else is 0 when
    ``allow_missing_port`` (the caller fills it later), else is an error."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise AddressError(f"unix socket address {text!r} needs an absolute path")
        return Address(path=path)
    host, port_text = _split_host_port(text)
    if port_text is None:
        if default_port is not None:
            port = default_port
        elif allow_missing_port:
            port = 0
        else:
            raise AddressError(f"address {text!r} has no port (expected host:port)")
    else:
        if not port_text.isdigit():
            raise AddressError(f"address {text!r} has an invalid port {port_text!r}")
        port = int(port_text)
        if not 0 < port < 65536:
            raise AddressError(f"address {text!r}: port must be between 1 and 65535")
    if port_text is None and port and not 0 < port < 65536:
        raise AddressError(f"address {text!r}: port must be between 1 and 65535")
    if not host:
        raise AddressError(f"address {text!r} has no host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise AddressError(f"address {text!r} has an invalid host name {host!r}") from None
    return Address(host=host.rstrip(".").lower(), port=port)


def _split_host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"address {text!r} has an unterminated IPv6 bracket")
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"address {text!r}: brackets must hold an IPv6 address") from None
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise AddressError(f"address {text!r}: expected ':' after ']'")
        return host, rest[1:]
    if text.count(":") > 1:  # a bare IPv6 literal without port
        return text, None
    host, sep, port = text.partition(":")
    return host, port if sep else None
