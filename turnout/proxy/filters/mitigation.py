"""Remediation mitigations on the request path (the ``Mitigation`` kind, compiled per rule).

``MitigationFilter`` runs first in a rule's chain, so a shed or blocked request costs the
least possible: one random draw against ``shed`` (a share in [0, 1]) answering a fast
503, then, when clients are blocked, a set lookup of the client address (exact addresses)
and a scan of the blocked networks (CIDRs wider than one address), answering 403. Built
at snapshot build from every live Mitigation that targets the route; the control plane
deletes a Mitigation when its lease ends, and the next snapshot has no filter.

``ConsumerBlockFilter`` runs right after the route's SecurityFilter (which names the
Consumer): one set lookup of the authenticated Consumer's name, answering 403. On a route
without a SecurityPolicy no request has a Consumer, so it never answers.
"""

from __future__ import annotations

import ipaddress
from random import random
from typing import Final

from turnout.proxy.filters.base import FilterContext, LocalReply, RequestFilter, Verdict

SHED_CODE: Final = b"mitigation_shed"
SHED_MESSAGE: Final = b"shed by a remediation mitigation; retry later"
BLOCK_CODE: Final = b"mitigation_blocked"
BLOCK_MESSAGE: Final = b"client blocked by a remediation mitigation"
CONSUMER_MESSAGE: Final = b"consumer blocked by a remediation mitigation"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class MitigationFilter(RequestFilter):
    def __init__(self, shed_percent: int, clients: tuple[str, ...]) -> None:
        self.shed = min(max(shed_percent, 0), 100) / 100.0
        exact: set[bytes] = set()
        networks: list[Network] = []
        for text in clients:
            net = ipaddress.ip_network(text, strict=False)
            if net.num_addresses == 1:
                exact.add(str(net.network_address).encode())
            else:
                networks.append(net)
        self.exact = frozenset(exact)
        self.networks = tuple(networks)
        self.blocks = bool(exact or networks)

    def on_request(self, ctx: FilterContext) -> Verdict:
        if self.shed and random() < self.shed:
            return LocalReply(503, SHED_CODE, SHED_MESSAGE)
        if self.blocks and self._blocked(ctx.client_ip):
            return LocalReply(403, BLOCK_CODE, BLOCK_MESSAGE)
        return None

    def _blocked(self, client: bytes) -> bool:
        if client in self.exact:
            return True
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(client.decode())
        except ValueError:
            return False
        return any(address in net for net in self.networks)

    def __repr__(self) -> str:
        return (
            f"<MitigationFilter shed={self.shed:g} blocked={len(self.exact) + len(self.networks)}>"
        )


class ConsumerBlockFilter(RequestFilter):
    def __init__(self, consumers: frozenset[str]) -> None:
        self.consumers = frozenset(c.encode() for c in consumers)

    def on_request(self, ctx: FilterContext) -> Verdict:
        principal = ctx.principal
        if principal is not None and principal.consumer_key in self.consumers:
            return LocalReply(403, BLOCK_CODE, CONSUMER_MESSAGE)
        return None

    def __repr__(self) -> str:
        return f"<ConsumerBlockFilter blocked={len(self.consumers)}>"
