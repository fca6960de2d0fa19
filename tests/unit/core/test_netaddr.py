"""``host:port`` / ``[v6]:port`` / ``unix:/path`` addresses from manifests and flags."""

from __future__ import annotations

import re

import pytest

from turnout.core.netaddr import Address, AddressError, parse_address


@pytest.mark.parametrize(
    ("text", "host", "port", "rendered"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080, "127.0.0.1:8080"),
        ("localhost:80", "localhost", 80, "localhost:80"),
        ("Orders.Internal.:9000", "orders.internal", 9000, "orders.internal:9000"),
        ("[::1]:443", "::1", 443, "[::1]:443"),
        ("[2001:db8::1]:1", "2001:db8::1", 1, "[2001:db8::1]:1"),
        ("  api:65535  ", "api", 65535, "api:65535"),
    ],
)
def test_tcp_addresses(text: str, host: str, port: int, rendered: str) -> None:
    addr = parse_address(text)

    assert (addr.host, addr.port, addr.is_unix) == (host, port, False)
    assert str(addr) == rendered


def test_unix_socket_addresses() -> None:
    addr = parse_address("unix:/run/app.sock")

    assert addr == Address(path="/run/app.sock")
    assert addr.is_unix
    assert str(addr) == "unix:/run/app.sock"


@pytest.mark.parametrize(
    ("text", "default", "allow_missing", "port"),
    [
        ("api", 8080, False, 8080),
        ("[::1]", 8080, False, 8080),
        ("::1", 80, False, 80),
        ("api", None, True, 0),
        ("api:81", 8080, False, 81),  # an explicit port wins over the default
    ],
)
def test_missing_ports(text: str, default: int | None, allow_missing: bool, port: int) -> None:
    assert parse_address(text, default, allow_missing_port=allow_missing).port == port


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api", "has no port"),
        ("api:", "invalid port ''"),
        ("api:http", "invalid port 'http'"),
        ("api:0", "port must be between 1 and 65535"),
        ("api:65536", "port must be between 1 and 65535"),
        (":80", "has no host"),
        ("[::1", "unterminated IPv6 bracket"),
        ("[::1]80", "expected ':' after ']'"),
        ("bad_name:80", "invalid host name 'bad_name'"),
        ("-api:80", "invalid host name"),
        ("a..b:80", "invalid host name"),
        ("unix:relative.sock", "needs an absolute path"),
        ("1:2:3", "has no port"),  # read as a bare IPv6 literal
    ],
)
def test_bad_addresses(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=re.escape(message)):
        parse_address(text)


def test_a_default_port_out_of_range_is_refused() -> None:
    with pytest.raises(AddressError, match="port must be between"):
        parse_address("api", 70000)


@pytest.mark.parametrize(
    ("text", "is_ip"),
    [("10.0.0.1:1", True), ("[fe80::1]:1", True), ("db:1", False), ("unix:/x", False)],
)
def test_is_ip(text: str, is_ip: bool) -> None:
    assert parse_address(text).is_ip is is_ip
