"""Client addresses and CIDR allow/deny lists.

The client address is the socket peer's, or, behind ``numTrustedHops`` proxies of your
own, the address the first of them saw: the Nth entry of ``X-Forwarded-For`` counted
from the right (each trusted proxy appends the address it received from). Entries left
of it were written by the client and are never believed. A request that passed through
fewer proxies than that (a shorter header) falls back to the socket peer, so a client
that reaches the gateway directly cannot choose its address by sending the header.

CIDR lists are compiled once into ``(network, mask)`` integers per address family, so a
check is a few integer operations per range.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from turnout.config.security import parse_cidr
from turnout.proxy.protocols.heads import RequestHead

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(raw: bytes | str) -> IPAddress | None:
    """An address from a socket peer or an X-Forwarded-For entry (``1.2.3.4``,
    ``1.2.3.4:5678``, ``::1``, ``[::1]:80``); IPv4-mapped IPv6 becomes IPv4."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class NetworkSet:
    """A set of CIDR ranges answering ``contains(ip)``."""

    __slots__ = ("_v4", "_v6")

    def __init__(self, cidrs: Iterable[str]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for text in cidrs:
            net = parse_cidr(text)  # validated: raises only on unvalidated input
            entry = (int(net.network_address), int(net.netmask))
            (v4 if net.version == 4 else v6).append(entry)
        self._v4 = tuple(v4)
        self._v6 = tuple(v6)

    def contains(self, ip: IPAddress | None) -> bool:
        if ip is None:
            return False
        value = int(ip)
        ranges = self._v4 if ip.version == 4 else self._v6
        return any(value & mask == network for network, mask in ranges)

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)


class ClientAddress:
    """Finds the client's address for one request (see the module docstring)."""

    __slots__ = ("hops",)

    def __init__(self, trusted_hops: int = 0) -> None:
        self.hops = trusted_hops

    def resolve(self, head: RequestHead, peer: bytes) -> IPAddress | None:
        hops = self.hops
        if hops:
            xff = head.forwarded_for
            if xff:
                entries = xff.split(b",")
                if len(entries) >= hops:
                    ip = parse_ip(entries[-hops])
                    if ip is not None:
                        return ip
        return parse_ip(peer)


class IPRules:
    """``deny`` wins; a non-empty ``allow`` admits only its ranges."""

    __slots__ = ("allow", "deny")

    def __init__(self, allow: Iterable[str], deny: Iterable[str]) -> None:
        self.allow = NetworkSet(allow)
        self.deny = NetworkSet(deny)

    def admits(self, ip: IPAddress | None) -> bool:
        if self.deny.contains(ip):
            return False
        return not self.allow or self.allow.contains(ip)
