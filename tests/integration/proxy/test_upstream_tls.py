"""TLS to upstreams, per Backend: verification on by default (CA from a Secret or the
system store), SNI override, and client certificates (mutual TLS) — over real sockets."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServeFactory
from turnout.testing.certs import CertificateAuthority
from turnout.testing.manifests import dump, gateway, route, to
from turnout.testing.requests import get

CA = CertificateAuthority("Upstream CA")
OTHER_CA = CertificateAuthority("Somebody else")
SERVER = CA.issue("upstream.internal")
CLIENT = CA.issue("turnout-gateway")


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        sock: Any = self.connection
        peer = sock.getpeercert() or {}
        subject = dict(x[0] for x in peer.get("subject", ()))
        body = json.dumps({"path": self.path, "client": subject.get("commonName")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _tls_server(tmp: Path, require_client: bool) -> tuple[ThreadingHTTPServer, int]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key = SERVER.write(tmp, "server")
    ctx.load_cert_chain(cert, key)
    if require_client:
        ctx.load_verify_locations(cadata=CA.cert_pem.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[dict[str, int]]:
    plain, plain_port = _tls_server(tmp_path, require_client=False)
    mutual, mutual_port = _tls_server(tmp_path, require_client=True)
    yield {"tls": plain_port, "mtls": mutual_port}
    for s in (plain, mutual):
        s.shutdown()
        s.server_close()


def _secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": data,
    }


def _backend(name: str, port: int, tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": name},
        "spec": {"endpoints": [{"address": f"127.0.0.1:{port}"}], "tls": tls},
    }


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    reply = get(port, path)
    return reply.status, json.loads(reply.body or b"{}")


def test_verified_tls_sni_and_mutual_tls(
    serve: ServeFactory, port: int, upstreams: dict[str, int]
) -> None:
    ca = {"caCertificateRefs": [{"name": "upstream-ca"}], "sni": "upstream.internal"}
    client = CLIENT.secret("gateway-client")
    serve(
        dump(
            gateway(port=port),
            _secret("upstream-ca", **{"ca.crt": CA.cert_pem.decode()}),
            _secret("other-ca", **{"ca.crt": OTHER_CA.cert_pem.decode()}),
            client,
            _backend("verified", upstreams["tls"], ca),
            _backend("system-store", upstreams["tls"], {"sni": "upstream.internal"}),
            _backend("wrong-name", upstreams["tls"], {**ca, "sni": "not-upstream.internal"}),
            _backend(
                "wrong-ca",
                upstreams["tls"],
                {"caCertificateRefs": [{"name": "other-ca"}], "sni": "upstream.internal"},
            ),
            _backend(
                "mutual",
                upstreams["mtls"],
                {**ca, "clientCertificateRef": {"name": "gateway-client"}},
            ),
            _backend("no-client-cert", upstreams["mtls"], ca),
            route(
                "r",
                [
                    to(name, f"/{name}")
                    for name in (
                        "verified",
                        "system-store",
                        "wrong-name",
                        "wrong-ca",
                        "mutual",
                        "no-client-cert",
                    )
                ],
            ),
        )
    )
    status, body = _get(port, "/verified/x")
    assert status == 200 and body["path"] == "/verified/x" and body["client"] is None
    # verification is on by default: an unknown CA, a name the certificate does not
    # cover, or a CA that did not sign it all fail the request
    assert _get(port, "/system-store")[0] == 502
    assert _get(port, "/wrong-name")[0] == 502
    assert _get(port, "/wrong-ca")[0] == 502
    status, body = _get(port, "/mutual")
    assert status == 200 and body["client"] == "turnout-gateway"
    assert _get(port, "/no-client-cert")[0] == 502
    # the pooled TLS connection is reused
    assert all(_get(port, "/verified")[0] == 200 for _ in range(5))
