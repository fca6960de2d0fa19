"""Backend ``spec.discovery``: a real DNS server (dnslib, on a loopback UDP port) serves
SRV and A records; a real ``turnout serve`` proxies to the discovered endpoints, follows
record changes and keeps the last good endpoints when the server fails."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.config.model.backend import DiscoverySpec
from turnout.control.discovery import DiscoveryError, resolve_srv
from turnout.testing import free_port
from turnout.testing.manifests import dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get

dnslib = pytest.importorskip("dnslib", reason="dnslib (test extra) serves the DNS records")
pytest.importorskip("dns.asyncresolver", reason="dnspython does the SRV lookups")
from dnslib import QTYPE, RCODE, RR, SRV, A  # noqa: E402
from dnslib.server import BaseResolver, DNSServer  # noqa: E402

NAME = "_http._tcp.orders.test"


class Zone(BaseResolver):  # type: ignore[misc]
    """SRV records for NAME, A records ``<host>.test -> 127.0.0.1``; ``failing`` SERVFAILs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.srv: list[tuple[int, int, int, str]] = []  # priority, weight, port, target
        self.failing = False
        self.queries = 0

    def set(self, *records: tuple[int, int, int, str]) -> None:
        with self.lock:
            self.srv = list(records)

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname, qtype = request.q.qname, QTYPE[request.q.qtype]
        with self.lock:
            self.queries += 1
            if self.failing:
                reply.header.rcode = RCODE.SERVFAIL
            elif str(qname).rstrip(".") == NAME and qtype == "SRV":
                for priority, weight, port, target in self.srv:
                    rdata = SRV(priority, weight, port, target)
                    reply.add_answer(RR(qname, QTYPE.SRV, rdata=rdata, ttl=1))
            elif str(qname).endswith(".test.") and qtype == "A":
                reply.add_answer(RR(qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=1))
            elif not str(qname).endswith(".test."):
                reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture
def dns() -> Iterator[tuple[Zone, int]]:
    zone = Zone()
    server = DNSServer(zone, port=0, address="127.0.0.1")
    server.start_thread()
    try:
        yield zone, server.server.server_address[1]
    finally:
        server.stop()
        server.server.server_close()


def test_resolve_maps_the_lowest_priority_group_and_weights(dns: tuple[Zone, int]) -> None:
    zone, dns_port = dns
    zone.set((10, 3, 8001, "a.test."), (10, 0, 8002, "b.test."), (20, 5, 8003, "c.test."))
    spec = DiscoverySpec.model_validate({"dnsSRV": NAME, "server": f"127.0.0.1:{dns_port}"})
    found = asyncio.run(resolve_srv(spec))
    assert found == (("127.0.0.1:8001", 3), ("127.0.0.1:8002", 1))
    zone.failing = True
    with pytest.raises(DiscoveryError):
        asyncio.run(resolve_srv(spec))


def test_serve_follows_srv_records_and_keeps_the_last_good(
    dns: tuple[Zone, int], echo: EchoFactory, serve: ServeFactory
) -> None:
    zone, dns_port = dns
    one, two = echo("one"), echo("two")
    zone.set((10, 1, one.port, "one.test."), (20, 1, two.port, "two.test."))
    port = free_port()
    orders = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": "orders", "namespace": "default"},
        "spec": {
            "discovery": {
                "dnsSRV": NAME,
                "refresh": "200ms",
                "timeout": "1s",
                "server": f"127.0.0.1:{dns_port}",
            }
        },
    }
    gw = serve(dump(gateway("gw", port), orders, route("r", [to("orders", "/")])))
    # the first revision already has the endpoints: resolved before the workers start
    assert get(port).status == 200
    assert one.requests >= 1 and two.requests == 0  # priority 20 is a fallback: unused

    zone.set((10, 1, two.port, "two.test."))
    wait_until(lambda: get(port).status == 200 and two.requests > 0, 10, "the new endpoints")
    before = one.requests
    for _ in range(5):
        assert get(port).status == 200
    assert one.requests == before

    zone.failing = True
    queries = zone.queries
    wait_until(lambda: zone.queries > queries + 3, 10, "lookups while the server fails")
    served = two.requests
    for _ in range(5):
        assert get(port).status == 200  # the last good endpoints stay
    assert two.requests == served + 5
    assert gw.stderr().count("DNS SRV lookup of _http._tcp.orders.test failed") == 1

    zone.failing = False
    wait_until(lambda: "works again" in gw.stderr(), 10, "recovery logged")


def test_a_discovering_backend_applied_through_the_api_is_resolved(
    dns: tuple[Zone, int], echo: EchoFactory, serve: ServeFactory
) -> None:
    zone, dns_port = dns
    one = echo("one")
    zone.set((10, 1, one.port, "one.test."))
    port = free_port()
    gw = serve(dump(gateway("gw", port)))  # no Backend yet: nothing is looked up
    orders = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": "orders", "namespace": "default"},
        "spec": {"discovery": {"dnsSRV": NAME, "server": f"127.0.0.1:{dns_port}"}},
    }
    code, body = gw.api(
        "POST", "/api/v1/apply", {"manifests": [orders, route("r", [to("orders", "/")])]}
    )
    assert code == 200, body
    # a new name is looked up at once (not after the 30 s default refresh)
    wait_until(lambda: get(port).status == 200 and one.requests > 0, 10, "discovered endpoint")
