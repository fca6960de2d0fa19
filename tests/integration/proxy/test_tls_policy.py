"""The TLS policy of HTTPS listeners against a real gateway, checked with ``openssl
s_client`` and Python's ``ssl``: AEAD-only TLS 1.2 suites by default, a per-listener
cipher string and minimum version (``tls.options``), and TLS 1.0/1.1 refused."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.certs import CertificateAuthority, weak_rsa_leaf
from turnout.testing.manifests import backend, dump, gateway, route
from turnout.testing.process import TurnoutProcess, free_port

CA = CertificateAuthority()
ECDSA = CA.issue("example.org", "a.example.org", "b.example.org")
RSA = weak_rsa_leaf("example.org", bits=2048)  # so ECDHE-RSA suites are possible at all
CBC = "ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384"
GCM = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256"


def https(name: str, port: int, hostname: str | None = None, **options: str) -> dict[str, Any]:
    tls: dict[str, Any] = {"certificateRefs": [{"name": "ecdsa"}, {"name": "rsa"}]}
    if options:
        tls["options"] = options
    lst: dict[str, Any] = {"name": name, "port": port, "protocol": "HTTPS", "tls": tls}
    if hostname:
        lst["hostname"] = hostname
    return lst


@pytest.fixture(scope="module")
def ports(serve_module: ServeFactory, echo_module: EchoFactory) -> Iterator[dict[str, int]]:
    ports = {name: free_port() for name in ("default", "cbc", "tls13", "shared")}
    listeners = [
        https("default", ports["default"]),
        https("cbc", ports["cbc"], **{"turnout.dev/tls-ciphers": "ECDHE+AESGCM:ECDHE+AES"}),
        https("tls13", ports["tls13"], **{"turnout.dev/tls-min-version": "1.3"}),
        https("shared-a", ports["shared"], "a.example.org"),
        https(
            "shared-b", ports["shared"], "b.example.org", **{"turnout.dev/tls-min-version": "1.3"}
        ),
    ]
    r = route("r", [{"backendRefs": [{"name": "echo", "port": 80}]}])
    r["spec"]["parentRefs"] = [{"name": "gw"}]
    proc: TurnoutProcess = serve_module(
        dump(
            gateway(port=ports["default"], listeners=listeners),
            ECDSA.secret("ecdsa"),
            RSA.secret("rsa"),
            backend("echo", echo_module("policy-echo").port),
            r,
        )
    )
    assert proc.status()
    yield ports


def s_client(port: int, *args: str, sni: str = "example.org") -> str:
    openssl = shutil.which("openssl")
    assert openssl is not None
    proc = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", sni, *args],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return proc.stdout + proc.stderr


def negotiated(out: str) -> str | None:
    """The cipher s_client reports, or None when the handshake failed."""
    for line in out.splitlines():
        if ", Cipher is " in line:
            cipher = line.rsplit(" ", 1)[-1]
            return None if cipher == "(NONE)" else cipher
    return None


def get(port: int, sni: str, maximum: ssl.TLSVersion | None = None) -> int:
    ctx = ssl.create_default_context(cadata=CA.cert_pem.decode())
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the RSA leaf is self-signed; not what is tested here
    if maximum is not None:
        ctx.maximum_version = maximum
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        conn = http.client.HTTPConnection(sni)
        conn.sock = tls
        conn.request("GET", "/", headers={"Host": sni})
        return conn.getresponse().status


def test_tls12_offers_aead_suites_only_by_default(ports: dict[str, int]) -> None:
    assert negotiated(s_client(ports["default"], "-tls1_2", "-cipher", CBC)) is None
    for suite in [*GCM.split(":"), "ECDHE-ECDSA-CHACHA20-POLY1305"]:
        assert negotiated(s_client(ports["default"], "-tls1_2", "-cipher", suite)) == suite
    assert negotiated(s_client(ports["default"], "-tls1_3")) == "TLS_AES_256_GCM_SHA384"


def test_a_listener_cipher_string_overrides_the_default(ports: dict[str, int]) -> None:
    suite = "ECDHE-RSA-AES128-SHA256"
    assert negotiated(s_client(ports["cbc"], "-tls1_2", "-cipher", suite)) == suite
    assert negotiated(s_client(ports["cbc"], "-tls1_2", "-cipher", GCM)) is not None


def test_a_tls13_only_listener_refuses_tls12(ports: dict[str, int]) -> None:
    out = s_client(ports["tls13"], "-tls1_2", "-cipher", GCM)
    assert negotiated(out) is None
    assert negotiated(s_client(ports["tls13"], "-tls1_3")) is not None
    assert get(ports["tls13"], "example.org") == 200


def test_on_a_shared_port_the_minimum_version_is_per_listener(ports: dict[str, int]) -> None:
    assert get(ports["shared"], "a.example.org", ssl.TLSVersion.TLSv1_2) == 200
    assert get(ports["shared"], "b.example.org") == 200  # TLS 1.3
    # OpenSSL picks the version before SNI selects the listener: refused after the handshake.
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, ssl.SSLError)):
        get(ports["shared"], "b.example.org", ssl.TLSVersion.TLSv1_2)


@pytest.mark.parametrize("version", ["-tls1_1", "-tls1"])
def test_tls_1_0_and_1_1_get_a_protocol_version_alert(ports: dict[str, int], version: str) -> None:
    # Debian's OpenSSL offers TLS < 1.2 only at security level 0.
    out = s_client(ports["default"], version, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert negotiated(out) is None
    assert "alert protocol version" in out


def client_hello(version: bytes) -> bytes:
    """A minimal ClientHello offering at most ``version`` (no extensions)."""
    body = version + bytes(32) + b"\x00" + b"\x00\x02\xc0\x14" + b"\x01\x00"
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def test_a_raw_tls11_client_hello_in_pieces_gets_the_alert(ports: dict[str, int]) -> None:
    hello = client_hello(b"\x03\x02")
    with socket.create_connection(("127.0.0.1", ports["default"]), timeout=10) as sock:
        for i in range(0, len(hello), 3):
            sock.sendall(hello[i : i + 3])
        data = b""
        while chunk := sock.recv(100):
            data += chunk
    assert data == b"\x15\x03\x01\x00\x02\x02\x46"  # fatal protocol_version, then close


def test_a_client_hello_sent_byte_by_byte_still_handshakes(ports: dict[str, int]) -> None:
    ctx = ssl.create_default_context(cadata=CA.cert_pem.decode())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="example.org")
    with socket.create_connection(("127.0.0.1", ports["default"]), timeout=10) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                for byte in outgoing.read():
                    sock.sendall(bytes([byte]))
                incoming.write(sock.recv(65536))
        assert tls.version() == "TLSv1.3"
