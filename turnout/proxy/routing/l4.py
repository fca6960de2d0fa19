"""Compiled lookup for an L4 socket: which route a TCP or TLS-passthrough connection takes.

A TCP socket has one route (the oldest TCPRoute attached to its listener). A TLS
passthrough socket chooses by the ClientHello's server name with Gateway API hostname
precedence: an exact name first, then the longest matching ``*.`` wildcard, then a route
that names no hostname. Listener hostnames are already folded in: the snapshot builder
registers each route under its intersection with the listener's hostname, so a route
never answers for a name its listener does not accept.

Per-socket knobs from the Gateway's ``turnout.dev`` annotations ride along: the idle
timeout and the connection cap read at accept time.
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

R = TypeVar("R")

DEFAULT_IDLE_TIMEOUT: Final = 3600.0  # seconds without a byte either way
CLIENT_HELLO_TIMEOUT: Final = 5.0  # to receive the whole ClientHello


class L4Table(Generic[R]):
    """One L4 socket's routes; ``R`` is the snapshot's compiled route."""

    __slots__ = (
        "default",
        "exact",
        "gateway",
        "idle_timeout",
        "listener",
        "max_connections",
        "passthrough",
        "wildcards",
    )

    def __init__(self, gateway: str, listener: str, passthrough: bool) -> None:
        self.gateway = gateway
        self.listener = listener
        self.passthrough = passthrough  # TLS: route by SNI; TCP: ``default`` only
        self.exact: dict[str, R] = {}
        self.wildcards: list[tuple[str, R]] = []  # (".suffix", route), longest first
        self.default: R | None = None  # the route of a TCP socket / of any server name
        self.idle_timeout = DEFAULT_IDLE_TIMEOUT
        self.max_connections = 0  # 0: no cap

    def add(self, hostname: str | None, route: R) -> None:
        """Register ``route`` for a hostname; the first registration of a name wins (the
        builder adds routes oldest first, the Gateway API's conflict rule)."""
        if hostname is None:
            if self.default is None:
                self.default = route
        elif hostname.startswith("*."):
            suffix = hostname[1:]
            if all(s != suffix for s, _ in self.wildcards):
                self.wildcards.append((suffix, route))
                self.wildcards.sort(key=lambda item: -len(item[0]))
        else:
            self.exact.setdefault(hostname, route)

    def lookup(self, server_name: str | None) -> R | None:
        if not self.passthrough:
            return self.default
        if server_name is None:
            return None  # passthrough without SNI: nothing to choose by (docs/l4.md)
        route = self.exact.get(server_name)
        if route is not None:
            return route
        for suffix, candidate in self.wildcards:
            if server_name.endswith(suffix) and len(server_name) > len(suffix):
                return candidate
        return self.default
