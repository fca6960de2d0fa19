"""TCPRoute and TLSRoute (SNI passthrough) through a real Turnout process, with real
TCP echo upstreams and Python ``ssl`` upstreams: weights, byte integrity both ways,
half-close, idle timeout, connection cap, SNI routing with wildcards (the client sees the
upstream's certificate: no termination), unknown names, openssl s_client, and reload
under an open pipe."""

from __future__ import annotations

import hashlib
import os
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServeFactory
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.certs import CertificateAuthority
from turnout.testing.manifests import backend, dump

ALPHA = "alpha.example.com"
WILD = "*.wild.example.com"


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    name = ""
    accepted = 0
    context: ssl.SSLContext | None = None


class _Echo(socketserver.BaseRequestHandler):
    """Echo until EOF, then send ``<EOF:name>`` and close: a reply after the client's
    half-close proves both that the EOF went through and the other direction stayed open."""

    def handle(self) -> None:
        server: Any = self.server
        server.accepted += 1
        sock = self.request
        try:
            if server.context is not None:
                sock = server.context.wrap_socket(sock, server_side=True)
                sock.sendall(f"hello from {server.name}\n".encode())
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                sock.sendall(data)
            sock.sendall(f"<EOF:{server.name}>".encode())
        except OSError:
            pass  # the client went away (or refused the handshake): nothing to echo to
        finally:
            sock.close()


def start_server(name: str, context: ssl.SSLContext | None = None) -> _Server:
    server = _Server(("127.0.0.1", 0), _Echo)
    server.name = name
    server.context = context
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def gateway(name: str, listeners: list[dict[str, Any]], **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "gatewayClassName": "turnout",
            "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
            "listeners": listeners,
        },
    }


def l4_route(
    kind: str, name: str, parent: str, refs: list[tuple[str, int]], hostnames: list[str] = ()
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parentRefs": [{"name": parent}],
        "rules": [{"backendRefs": [{"name": n, "weight": w} for n, w in refs]}],
    }
    if hostnames:
        spec["hostnames"] = list(hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


class Env:
    def __init__(self, tmp: Path) -> None:
        self.ca = CertificateAuthority()
        self.ca_file = tmp / "ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)
        self.echo_a = start_server("a")
        self.echo_b = start_server("b")
        self.tls_alpha = start_server("alpha", self._context(tmp, "alpha", ALPHA))
        self.tls_wild = start_server("wild", self._context(tmp, "wild", WILD))
        self.tcp_port, self.tls_port, self.capped_port = free_port(), free_port(), free_port()

    def _context(self, tmp: Path, stem: str, name: str) -> ssl.SSLContext:
        cert, key = self.ca.issue(name).write(tmp, stem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx

    def manifest(self, tcp_refs: list[tuple[str, int]]) -> str:
        return dump(
            gateway(
                "l4",
                [
                    {"name": "tcp", "port": self.tcp_port, "protocol": "TCP"},
                    {
                        "name": "tls",
                        "port": self.tls_port,
                        "protocol": "TLS",
                        "tls": {"mode": "Passthrough"},
                    },
                ],
                **{"turnout.dev/l4-idle-timeout": "2s"},
            ),
            gateway(
                "capped",
                [{"name": "tcp", "port": self.capped_port, "protocol": "TCP"}],
                **{"turnout.dev/l4-max-connections": "2"},
            ),
            backend("echo-a", self.echo_a.server_address[1]),
            backend("echo-b", self.echo_b.server_address[1]),
            backend("tls-alpha", self.tls_alpha.server_address[1]),
            backend("tls-wild", self.tls_wild.server_address[1]),
            l4_route("TCPRoute", "split", "l4", tcp_refs),
            l4_route("TCPRoute", "capped", "capped", [("echo-a", 1)]),
            l4_route("TLSRoute", "alpha", "l4", [("tls-alpha", 1)], [ALPHA]),
            l4_route("TLSRoute", "wild", "l4", [("tls-wild", 1)], [WILD]),
        )

    def close(self) -> None:
        for server in (self.echo_a, self.echo_b, self.tls_alpha, self.tls_wild):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("l4"))
    yield e
    e.close()


@pytest.fixture(scope="module")
def proxy(env: Env, serve_module: ServeFactory) -> TurnoutProcess:
    return serve_module(env.manifest([("echo-a", 3), ("echo-b", 1)]))


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_tcp_route_splits_by_weight_and_half_close_works(proxy: TurnoutProcess, env: Env) -> None:
    seen = {"a": 0, "b": 0}
    for _ in range(40):
        with connect(env.tcp_port) as sock:
            sock.sendall(b"ping")
            sock.shutdown(socket.SHUT_WR)  # half-close: the reply must still arrive
            reply = read_all(sock)
        assert reply.startswith(b"ping<EOF:")
        seen[reply[9:10].decode()] += 1
    assert seen["a"] + seen["b"] == 40
    assert seen["a"] > seen["b"] > 0  # weights 3:1
    time.sleep(1.2)  # workers report once a second
    assert proxy.metric("turnout_l4_connections_total", route="default/split") >= 40


def test_eight_mebibytes_both_ways_intact(proxy: TurnoutProcess, env: Env) -> None:
    payload = os.urandom(8 << 20)
    with connect(env.tcp_port, timeout=30) as sock:
        sender = threading.Thread(
            target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR))
        )
        sender.start()
        reply = read_all(sock)
        sender.join()
    assert reply.endswith((b"<EOF:a>", b"<EOF:b>"))
    body = reply[:-7]
    assert len(body) == len(payload)
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        up = proxy.metric("turnout_l4_bytes_total", route="default/split", direction="upstream")
        if up >= len(payload):
            break
        time.sleep(0.3)
    assert up >= len(payload)


def test_idle_timeout_closes_an_idle_pipe(proxy: TurnoutProcess, env: Env) -> None:
    with connect(env.tcp_port, timeout=8) as sock:
        sock.sendall(b"x")
        assert sock.recv(10) == b"x"
        started = time.monotonic()
        assert read_all(sock) == b""  # closed by the gateway, not the echo server
        assert 1.5 <= time.monotonic() - started <= 5.0


def test_max_connections_refuses_the_next_one(proxy: TurnoutProcess, env: Env) -> None:
    first, second = connect(env.capped_port), connect(env.capped_port)
    for sock in (first, second):
        sock.sendall(b"up")
        assert sock.recv(10) == b"up"
    with connect(env.capped_port) as third:
        try:
            third.sendall(b"no")
            assert third.recv(10) == b""
        except ConnectionError:
            pass
    first.close()
    time.sleep(0.3)
    with connect(env.capped_port) as fourth:
        fourth.sendall(b"again")
        assert fourth.recv(10) == b"again"
    second.close()
    time.sleep(1.2)  # workers report once a second
    assert proxy.metric("turnout_l4_refused_total", reason="max_connections") >= 1


def tls_client(env: Env) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(env.ca_file))
    return ctx


@pytest.mark.parametrize(
    ("server_name", "upstream", "cert_name"),
    [
        (ALPHA, "alpha", ALPHA),
        ("x.wild.example.com", "wild", WILD),
        ("a.b.wild.example.com", "wild", WILD),
    ],
)
def test_tls_passthrough_by_sni(
    proxy: TurnoutProcess, env: Env, server_name: str, upstream: str, cert_name: str
) -> None:
    client = tls_client(env)
    # The Gateway API's "*." matches several labels, X.509's only one: for the deeper
    # name the chain is still verified, the name is checked below instead.
    client.check_hostname = server_name.count(".") <= 3
    with (
        connect(env.tls_port) as raw,
        client.wrap_socket(raw, server_hostname=server_name) as sock,
    ):
        cert = sock.getpeercert()
        assert cert is not None
        # The upstream's own certificate, verified end to end: TLS was not terminated.
        assert ("DNS", cert_name) in cert["subjectAltName"]
        assert sock.recv(100) == f"hello from {upstream}\n".encode()
        sock.sendall(b"secret")
        assert sock.recv(100) == b"secret"


def test_unknown_or_missing_sni_is_closed(proxy: TurnoutProcess, env: Env) -> None:
    with connect(env.tls_port) as raw, pytest.raises((ssl.SSLError, ConnectionError)):
        tls_client(env).wrap_socket(raw, server_hostname="nope.example.com")
    with connect(env.tls_port) as raw:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(raw)  # no server_hostname: no SNI
    with connect(env.tls_port) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not TLS
        assert read_all(raw) == b""


def test_openssl_s_client_reaches_the_right_upstream(proxy: TurnoutProcess, env: Env) -> None:
    out = subprocess.run(
        [
            "openssl",
            "s_client",
            "-servername",
            "shop.wild.example.com",
            "-connect",
            f"127.0.0.1:{env.tls_port}",
            "-CAfile",
            str(env.ca_file),
            "-verify_return_error",
            "-ign_eof",
        ],
        input=b"over openssl\n",
        capture_output=True,
        timeout=20,
    )
    text = out.stdout.decode(errors="replace")
    assert "hello from wild" in text
    assert "over openssl" in text
    assert "Verify return code: 0 (ok)" in text


def test_reload_keeps_an_open_pipe(serve: ServeFactory, env: Env, tmp_path: Path) -> None:
    # Its own process: it rewrites the config (ports are fresh so the module's process
    # keeps its own).
    env2 = Env.__new__(Env)
    env2.__dict__.update(env.__dict__)
    env2.tcp_port, env2.tls_port, env2.capped_port = free_port(), free_port(), free_port()
    proc = serve(env2.manifest([("echo-a", 1)]))
    with connect(env2.tcp_port) as sock:
        sock.sendall(b"before")
        assert sock.recv(100) == b"before"
        (proc.config / "gateway.yaml").write_text(env2.manifest([("echo-b", 1)]))
        proc.reload()
        proc.wait_ready(revision=2)
        sock.sendall(b"after")
        assert sock.recv(100) == b"after"
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"<EOF:a>"  # still the old route's backend
    with connect(env2.tcp_port) as sock:
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"<EOF:b>"  # new connections take the new route
