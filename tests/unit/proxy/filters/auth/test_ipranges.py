"""Client address detection behind trusted proxies, and CIDR allow/deny lists."""

from __future__ import annotations

import ipaddress

import pytest

from tests.unit.proxy.filters.auth.conftest import request
from turnout.proxy.filters.auth.ipranges import ClientAddress, IPRules, NetworkSet, parse_ip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.1.2.3", "10.1.2.3"),
        (" 10.1.2.3 ", "10.1.2.3"),
        ("10.1.2.3:5678", "10.1.2.3"),
        ("::1", "::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("unknown", None),
        ("", None),
        ("[::1", None),
    ],
)
def test_parse_ip(raw: str, expected: str | None) -> None:
    ip = parse_ip(raw.encode())
    assert (str(ip) if ip is not None else None) == expected


def test_network_sets_match_both_families() -> None:
    nets = NetworkSet(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
    assert nets.contains(ipaddress.ip_address("10.255.0.1"))
    assert nets.contains(ipaddress.ip_address("192.0.2.7"))
    assert not nets.contains(ipaddress.ip_address("192.0.2.8"))
    assert nets.contains(ipaddress.ip_address("2001:db8:1::5"))
    assert not nets.contains(ipaddress.ip_address("2001:db9::1"))
    assert not nets.contains(None)
    assert not NetworkSet([])


def test_trusted_hops_count_from_the_right() -> None:
    peer = b"127.0.0.1"
    direct = ClientAddress(0)
    assert str(direct.resolve(request(forwarded_for="6.6.6.6"), peer)) == "127.0.0.1"
    one = ClientAddress(1)
    # The client wrote "6.6.6.6"; our proxy appended the address it saw, 203.0.113.9.
    head = request(forwarded_for="6.6.6.6, 203.0.113.9")
    assert str(one.resolve(head, peer)) == "203.0.113.9"
    two = ClientAddress(2)
    assert str(two.resolve(head, peer)) == "6.6.6.6"
    # Fewer entries than trusted hops: the request bypassed a proxy; use the peer.
    assert str(ClientAddress(3).resolve(head, peer)) == "127.0.0.1"
    assert str(one.resolve(request(), peer)) == "127.0.0.1"
    assert str(one.resolve(request(forwarded_for="garbage"), peer)) == "127.0.0.1"


def test_ip_rules_deny_wins_and_allow_restricts() -> None:
    rules = IPRules(["127.0.0.0/8"], ["127.0.0.2/32"])
    assert rules.admits(ipaddress.ip_address("127.0.0.1"))
    assert not rules.admits(ipaddress.ip_address("127.0.0.2"))
    assert not rules.admits(ipaddress.ip_address("10.0.0.1"))
    assert not rules.admits(None)
    deny_only = IPRules([], ["10.0.0.0/8"])
    assert deny_only.admits(ipaddress.ip_address("192.0.2.1"))
    assert not deny_only.admits(ipaddress.ip_address("10.0.0.1"))
