"""Listening sockets, bound once by the supervisor and shared with every worker.

Sharing one socket (rather than ``SO_REUSEPORT`` per worker) means connections queued
in the kernel belong to the listener, not to a worker: a crashed or replaced worker
never takes queued connections down with it (HAProxy's documented reload RST cause).
"""

from __future__ import annotations

import ipaddress
import socket

BACKLOG = 4096


class BindError(OSError):
    def __init__(self, key: str, exc: OSError) -> None:
        super().__init__(exc.errno, f"cannot listen on {key}: {exc.strerror or exc}")
        self.key = key


def bind_listener(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((ip, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ListenerSet:
    def __init__(self) -> None:
        self.sockets: dict[str, socket.socket] = {}

    def bind_missing(self, bindings: dict[str, tuple[str, int]]) -> dict[str, socket.socket]:
        """Bind every binding not bound yet; all or nothing. Raises ``BindError``."""
        new: dict[str, socket.socket] = {}
        try:
            for key, (ip, port) in bindings.items():
                if key not in self.sockets:
                    try:
                        new[key] = bind_listener(ip, port)
                    except OSError as exc:
                        raise BindError(key, exc) from exc
        except BindError:
            for sock in new.values():
                sock.close()
            raise
        self.sockets.update(new)
        return new

    def close_unused(self, keep: set[str]) -> None:
        for key in list(self.sockets):
            if key not in keep:
                self.sockets.pop(key).close()

    def close_all(self) -> None:
        self.close_unused(set())

    def port_of(self, key: str) -> int:
        return int(self.sockets[key].getsockname()[1])
