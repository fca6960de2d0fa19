"""HTTPS listeners over real TLS: certificates chosen by SNI (exact, wildcard, default),
TLS 1.2+ only, ALPN, 421 for misdirected requests, and certificate files reloaded when
they change without dropping established connections."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.certs import CertificateAuthority, Leaf
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.process import TurnoutProcess, free_port

CA = CertificateAuthority()
DEFAULT = CA.issue("example.org")
SECOND = CA.issue("second-example.org")
WILD = CA.issue("*.wildcard.org")


def https(name: str, port: int, secret: str, hostname: str | None = None) -> dict[str, Any]:
    lst: dict[str, Any] = {
        "name": name,
        "port": port,
        "protocol": "HTTPS",
        "tls": {"certificateRefs": [{"kind": "Secret", "name": secret}]},
    }
    if hostname:
        lst["hostname"] = hostname
    return lst


def attached(
    name: str, section: str, backend_name: str, hostnames: list[str] | None = None
) -> dict[str, Any]:
    r = route(name, [to(backend_name)], hostnames=hostnames)
    r["spec"]["parentRefs"] = [{"name": "gw", "sectionName": section}]
    return r


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=CA.cert_pem.decode())
    return ctx


def request(
    port: int, sni: str, host: str, path: str = "/", ctx: ssl.SSLContext | None = None
) -> tuple[int, dict[str, Any], x509.Certificate]:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port, timeout=10, context=ctx or client_context()
    )
    # http.client sends SNI = the connection host; connect by IP, present `sni`
    conn.host = sni
    conn._create_connection = lambda addr, *a, **kw: socket.create_connection(  # type: ignore[method-assign]
        ("127.0.0.1", port), *a, **kw
    )
    try:
        conn.request("GET", path, headers={"Host": host})
        assert conn.sock is not None
        der = conn.sock.getpeercert(binary_form=True)
        assert der is not None
        resp = conn.getresponse()
        raw = resp.read()
        body = json.loads(raw) if resp.getheader("content-type") == "application/json" else {}
        return resp.status, body, x509.load_der_x509_certificate(der)
    finally:
        conn.close()


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.rfc4514_string())


@pytest.fixture
def tls_gateway(serve: ServeFactory, port: int, echo: EchoFactory) -> tuple[TurnoutProcess, int]:
    v1, v2, v3 = echo("v1"), echo("v2"), echo("v3")
    gw = gateway(
        port=port,
        listeners=[
            https("https", port, "default-cert"),
            https("https-with-hostname", port, "second-cert", "second-example.org"),
            https("https-with-wildcard-hostname", port, "wild-cert", "*.wildcard.org"),
        ],
    )
    proc = serve(
        dump(
            gw,
            DEFAULT.secret("default-cert"),
            SECOND.secret("second-cert"),
            WILD.secret("wild-cert"),
            backend("v1", v1.port),
            backend("v2", v2.port),
            backend("v3", v3.port),
            attached("r1", "https", "v1", ["example.org"]),
            attached("r2", "https-with-hostname", "v2"),
            attached("r3", "https-with-wildcard-hostname", "v3"),
        ),
        workers=2,
    )
    return proc, port


def test_sni_selects_certificate_and_listener(tls_gateway: tuple[TurnoutProcess, int]) -> None:
    _, port = tls_gateway
    status, body, cert = request(port, "example.org", "example.org")
    assert status == 200 and body["pod"] == "v1"
    assert common_name(cert) == "CN=example.org"
    # the upstream learns the request came over TLS
    assert body["headers"]["X-Forwarded-Proto"] == ["https"]
    status, body, cert = request(port, "second-example.org", "second-example.org")
    assert status == 200 and body["pod"] == "v2" and common_name(cert) == "CN=second-example.org"
    status, body, cert = request(port, "a.wildcard.org", "a.wildcard.org")
    assert status == 200 and body["pod"] == "v3" and common_name(cert) == "CN=*.wildcard.org"
    # an unknown name gets the default listener's certificate (verification off to see it)
    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    status, _, cert = request(port, "unknown.net", "example.org", ctx=loose)
    assert status == 200 and common_name(cert) == "CN=example.org"


@pytest.mark.parametrize(
    ("sni", "host", "expected"),
    [
        ("example.org", "second-example.org", 421),
        ("example.org", "unknown-example.org", 404),
        ("second-example.org", "example.org", 421),
        ("second-example.org", "unknown-example.org", 421),
        ("third.wildcard.org", "fifth.wildcard.org", 200),
        ("third.wildcard.org", "second-example.org", 421),
    ],
)
def test_misdirected_requests_get_421(
    tls_gateway: tuple[TurnoutProcess, int], sni: str, host: str, expected: int
) -> None:
    _, port = tls_gateway
    loose = client_context()
    loose.check_hostname = False  # the point is sending a Host the certificate does not cover
    status, body, _ = request(port, sni, host, ctx=loose)
    assert status == expected
    if expected == 421:
        assert body["error"] == "misdirected_request"


def _openssl(port: int, *args: str) -> str:
    openssl = shutil.which("openssl")
    assert openssl is not None
    proc = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return proc.stdout + proc.stderr


def test_openssl_sni_alpn_and_versions(tls_gateway: tuple[TurnoutProcess, int]) -> None:
    _, port = tls_gateway
    out = _openssl(port, "-servername", "second-example.org", "-alpn", "http/1.1")
    assert "CN = second-example.org" in out or "CN=second-example.org" in out
    assert "ALPN protocol: http/1.1" in out
    assert "Protocol  : TLSv1.3" in out or "TLSv1.3" in out
    # TLS 1.2 is accepted, 1.1 is not
    assert "Cipher is (NONE)" not in _openssl(port, "-servername", "example.org", "-tls1_2")
    old = _openssl(port, "-servername", "example.org", "-tls1_1")
    assert "Cipher is (NONE)" in old or "no protocols available" in old or "alert" in old


def test_plain_http_to_a_tls_port_is_refused_cleanly(
    tls_gateway: tuple[TurnoutProcess, int],
) -> None:
    _, port = tls_gateway
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
        data = sock.recv(4096)
        # the handshake fails: a TLS alert or a close, never an HTTP answer in clear text
        assert not data.startswith(b"HTTP/")
    status, _, _ = request(port, "example.org", "example.org")
    assert status == 200


def test_certificate_files_reload_without_dropping_connections(
    serve: ServeFactory, port: int, echo: EchoFactory, tmp_path: Path
) -> None:
    v1 = echo("v1")
    certs = tmp_path / "certs"
    certs.mkdir()
    old: Leaf = CA.issue("example.org")
    cert_path, key_path = old.write(certs)
    listener = {
        "name": "https",
        "port": port,
        "protocol": "HTTPS",
        "tls": {
            "options": {
                "turnout.dev/certificate-file": str(cert_path),
                "turnout.dev/key-file": str(key_path),
            }
        },
    }
    serve(
        dump(
            gateway(port=port, listeners=[listener]), backend("v1", v1.port), route("r", [to("v1")])
        )
    )

    # a keep-alive connection made with the old certificate
    kept = http.client.HTTPSConnection("example.org", port, timeout=10, context=client_context())
    kept._create_connection = lambda addr, *a, **kw: socket.create_connection(  # type: ignore[method-assign]
        ("127.0.0.1", port), *a, **kw
    )
    kept.request("GET", "/")
    assert kept.getresponse().read()
    _, _, cert = request(port, "example.org", "example.org")
    assert cert.serial_number == old.serial

    new = CA.issue("example.org")
    # renewals replace the files; write the key first and rename, as tools do
    new.write(certs, "next")
    (certs / "next.key").replace(key_path)
    (certs / "next.crt").replace(cert_path)
    wait_until(
        lambda: request(port, "example.org", "example.org")[2].serial_number == new.serial,
        10,
        "the new certificate to be served",
        interval=0.2,
    )
    # the connection from before the renewal still works
    kept.request("GET", "/")
    resp = kept.getresponse()
    assert resp.status == 200
    resp.read()
    kept.close()


def test_secrets_are_write_only_through_the_api(tls_gateway: tuple[TurnoutProcess, int]) -> None:
    proc, _ = tls_gateway
    extra = CA.issue("api.example.org").secret("api-cert")
    code, created = proc.api("POST", "/api/v1/namespaces/default/secrets", extra)
    assert code == 201
    key_pem = str(extra["stringData"]["tls.key"])  # type: ignore[index]
    assert created["stringData"] == {"tls.crt": "(redacted)", "tls.key": "(redacted)"}
    listed = proc.api("GET", "/api/v1/namespaces/default/secrets")[1]
    revision = proc.api(
        "GET",
        f"/api/v1/revisions/{proc.api('GET', '/api/v1/revisions')[1]['items'][0]['revision']}",
    )[1]
    audit = proc.api("GET", "/api/v1/audit?limit=5")[1]
    for doc in (created, listed, revision, audit):
        assert "PRIVATE KEY" not in json.dumps(doc) and key_pem[40:80] not in json.dumps(doc)


def test_a_secret_created_through_the_api_serves_a_listener(
    tls_gateway: tuple[TurnoutProcess, int],
) -> None:
    proc, _ = tls_gateway
    leaf = CA.issue("api.example.org")
    assert proc.api("POST", "/api/v1/namespaces/default/secrets", leaf.secret("api-cert"))[0] == 201
    other = free_port()
    gw = gateway(name="api-gw", port=other, listeners=[https("https", other, "api-cert")])
    assert proc.api("POST", "/api/v1/namespaces/default/gateways", gw)[0] == 201
    r = route("api-r", [to("v1")])
    r["spec"]["parentRefs"] = [{"name": "api-gw"}]
    assert proc.api("POST", "/api/v1/namespaces/default/httproutes", r)[0] == 201
    deadline = time.monotonic() + 10
    while True:
        try:
            status, body, cert = request(other, "api.example.org", "api.example.org")
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert status == 200 and body["pod"] == "v1"
    assert cert.serial_number == leaf.serial


def test_client_certificates_mutual_tls(
    serve: ServeFactory, port: int, echo: EchoFactory, tmp_path: Path
) -> None:
    v1 = echo("v1")
    clients_ca = CertificateAuthority("Clients CA")
    stranger_ca = CertificateAuthority("Stranger CA")
    ca_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "clients-ca"},
        "type": "Opaque",
        "stringData": {"ca.crt": clients_ca.cert_pem.decode()},
    }
    strict = https("https", port, "default-cert")
    strict["tls"]["frontendValidation"] = {"caCertificateRefs": [{"name": "clients-ca"}]}
    loose_port = free_port()
    loose = https("loose", loose_port, "default-cert")
    loose["tls"]["frontendValidation"] = {
        "caCertificateRefs": [{"name": "clients-ca"}],
        "mode": "AllowInsecureFallback",
    }
    serve(
        dump(
            gateway(port=port, listeners=[strict, loose]),
            DEFAULT.secret("default-cert"),
            ca_secret,
            backend("v1", v1.port),
            route("r", [to("v1")]),
        )
    )

    def with_cert(ca: CertificateAuthority | None) -> ssl.SSLContext:
        ctx = client_context()
        if ca is not None:
            cert, key = ca.issue("alice").write(tmp_path, f"client-{id(ca)}")
            ctx.load_cert_chain(cert, key)
        return ctx

    # a certificate from the trusted CA: in, and the upstream learns who it is
    status, body, _ = request(port, "example.org", "example.org", ctx=with_cert(clients_ca))
    assert status == 200
    xfcc = body["headers"]["X-Forwarded-Client-Cert"]
    assert len(xfcc) == 1 and 'Subject="CN=alice"' in xfcc[0] and "Hash=" in xfcc[0]
    # no certificate, or one from a CA the listener does not trust: no request gets through
    for ctx in (with_cert(None), with_cert(stranger_ca)):
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
            request(port, "example.org", "example.org", ctx=ctx)
    # AllowInsecureFallback: in without a certificate, and a forged header never passes
    conn = http.client.HTTPSConnection(
        "example.org", loose_port, timeout=10, context=with_cert(None)
    )
    conn._create_connection = lambda addr, *a, **kw: socket.create_connection(  # type: ignore[method-assign]
        ("127.0.0.1", loose_port), *a, **kw
    )
    conn.request("GET", "/", headers={"x-forwarded-client-cert": 'Subject="CN=admin"'})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 200 and "X-Forwarded-Client-Cert" not in body["headers"]


def test_security_policy_authorizes_by_client_certificate(
    serve: ServeFactory, port: int, echo: EchoFactory, tmp_path: Path
) -> None:
    v1 = echo("v1")
    clients_ca = CertificateAuthority("Clients CA")
    ca_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "clients-ca"},
        "type": "Opaque",
        "stringData": {"ca.crt": clients_ca.cert_pem.decode()},
    }
    listener = https("https", port, "default-cert")
    listener["tls"]["frontendValidation"] = {
        "caCertificateRefs": [{"name": "clients-ca"}],
        "mode": "AllowInsecureFallback",
    }
    policy = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": "certs"},
        "spec": {
            "targetRefs": [{"kind": "HTTPRoute", "name": "r"}],
            "clientCertificate": {},
            "authorization": {
                "defaultAction": "Deny",
                "rules": [{"action": "Allow", "principal": {"consumers": ["alice"]}}],
            },
        },
    }
    serve(
        dump(
            gateway(port=port, listeners=[listener]),
            DEFAULT.secret("default-cert"),
            ca_secret,
            backend("v1", v1.port),
            route("r", [to("v1")]),
            policy,
        )
    )

    def as_client(name: str | None) -> ssl.SSLContext:
        ctx = client_context()
        if name is not None:
            cert, key = clients_ca.issue(name).write(tmp_path, name)
            ctx.load_cert_chain(cert, key)
        return ctx

    assert request(port, "example.org", "example.org", ctx=as_client("alice"))[0] == 200
    status, body, _ = request(port, "example.org", "example.org", ctx=as_client("bob"))
    assert status == 403 and body["error"] == "forbidden"
    status, body, _ = request(port, "example.org", "example.org", ctx=as_client(None))
    assert status == 401
