"""The runner's clients and HTTP/2 echoes without Turnout: the TLS client (``checks.send``
over TLS, ``checks.send_h2``, the ALPN probe) against small local TLS servers; the h2c
client against the h2c-only echo; the gRPC client against the gRPC echo, and the
hand-written protobuf codec. So a conformance failure is known to be the gateway's."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conformance.checks import (
    ClientTls,
    compare_grpc,
    probe_alpn,
    send,
    send_grpc,
    send_h2,
)
from tests.conformance.echoes import (
    GrpcEcho,
    H2cEcho,
    decode_echo_response,
    encode_echo_response,
    pb_fields,
)
from turnout.samples.echo import EchoIdentity
from turnout.testing import BackgroundLoop
from turnout.testing.certs import CertificateAuthority

CA = CertificateAuthority("conformance client test CA")
LEAF = CA.issue("example.org", "*.wildcard.org")
OTHER_CA = CertificateAuthority("someone else")


def client(sni: str, alpn: tuple[str, ...], ca: CertificateAuthority = CA) -> ClientTls:
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    ctx.check_hostname = False
    ctx.set_alpn_protocols(list(alpn))
    return ClientTls(ctx, sni)


def _recv_head(conn: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _serve_h1(conn: ssl.SSLSocket, sni: str | None) -> None:
    head = _recv_head(conn).decode("latin-1").split("\r\n")
    host = next((ln.split(":", 1)[1].strip() for ln in head if ln.lower().startswith("host:")), "")
    body = json.dumps({"sni": sni, "host": host, "line": head[0]}).encode()
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _serve_h2(conn: ssl.SSLSocket, sni: str | None) -> None:
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import RequestReceived

    h2 = H2Connection(H2Configuration(client_side=False))
    h2.initiate_connection()
    conn.sendall(h2.data_to_send())
    while True:
        data = conn.recv(65536)
        if not data:
            return
        for event in h2.receive_data(data):
            if isinstance(event, RequestReceived):
                fields = {k.decode(): v.decode() for k, v in event.headers}
                body = json.dumps(
                    {"sni": sni, "host": fields[":authority"], "line": fields[":path"]}
                ).encode()
                status = "421" if fields[":authority"] == "misdirected.example" else "200"
                h2.send_headers(
                    event.stream_id,
                    [
                        (":status", status),
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ],
                )
                h2.send_data(event.stream_id, body, end_stream=True)
        conn.sendall(h2.data_to_send())


Server = Callable[[tuple[str, ...]], int]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Server]:
    """``tls_server(alpn) -> port``: a TLS server on 127.0.0.1 (one connection at a time)
    answering HTTP/1.1 or, when ALPN selects h2, HTTP/2, with a JSON body naming the SNI
    and Host it saw."""
    cert, key = LEAF.write(tmp_path)
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(alpn: tuple[str, ...]) -> int:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(list(alpn))
        seen: list[str | None] = [None]

        def note(_sock: object, name: str | None, _ctx: ssl.SSLContext) -> None:
            seen[0] = name

        ctx.sni_callback = note
        lsock = socket.create_server(("127.0.0.1", 0))
        listeners.append(lsock)

        def loop() -> None:
            while True:
                try:
                    raw, _ = lsock.accept()
                except OSError:
                    return
                seen[0] = None
                try:
                    with ctx.wrap_socket(raw, server_side=True) as conn:
                        if conn.selected_alpn_protocol() == "h2":
                            _serve_h2(conn, seen[0])
                        else:
                            _serve_h1(conn, seen[0])
                except OSError:
                    raw.close()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)
        return int(lsock.getsockname()[1])

    yield start
    for lsock in listeners:
        lsock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        lsock.close()
    for thread in threads:
        thread.join(timeout=5)


def test_https_request_sends_the_case_sni_and_host(tls_server: Server) -> None:
    port = tls_server(("http/1.1",))
    ex = send("127.0.0.1", port, "GET", "/p", "other.example", {}, 5, client("example.org", ()))
    assert ex.error == "" and ex.status == 200
    assert ex.echo == {"sni": "example.org", "host": "other.example", "line": "GET /p HTTP/1.1"}
    assert "(SNI example.org, HTTP/1.1)" in ex.describe_request()


def test_https_request_trusts_only_the_session_ca(tls_server: Server) -> None:
    port = tls_server(("http/1.1",))
    ex = send("127.0.0.1", port, "GET", "/", "example.org", {}, 5, client("x", (), OTHER_CA))
    assert ex.status == 0 and "CERTIFICATE_VERIFY_FAILED" in ex.error


def test_h2_request_sets_authority_and_reads_status(tls_server: Server) -> None:
    pytest.importorskip("h2", reason="h2 (python-hyper) is not installed")
    port = tls_server(("h2", "http/1.1"))
    tls = client("third.wildcard.org", ("h2",))
    ex = send_h2("127.0.0.1", port, "GET", "/d?x=1", "fith.wildcard.org", {"X-A": "b"}, 5, tls)
    assert ex.error == "" and ex.status == 200
    assert ex.echo == {"sni": "third.wildcard.org", "host": "fith.wildcard.org", "line": "/d?x=1"}
    assert ex.header("Content-Type") == "application/json"
    ex = send_h2("127.0.0.1", port, "GET", "/", "misdirected.example", {}, 5, tls)
    assert ex.error == "" and ex.status == 421


def test_h2_request_without_h2_alpn_is_an_error(tls_server: Server) -> None:
    port = tls_server(("http/1.1",))
    ex = send_h2(
        "127.0.0.1", port, "GET", "/", "example.org", {}, 5, client("example.org", ("h2",))
    )
    assert ex.status == 0 and "ALPN" in ex.error


@pytest.mark.parametrize(
    ("offered", "selected"), [(("h2", "http/1.1"), "h2"), (("http/1.1",), "http/1.1")]
)
def test_alpn_probe_reports_what_the_server_selected(
    tls_server: Server, offered: tuple[str, ...], selected: str
) -> None:
    port = tls_server(offered)
    assert probe_alpn("127.0.0.1", port, client("example.org", ("h2", "http/1.1")), 5) == (
        selected,
        "",
    )


# --- h2c echo and client ------------------------------------------------------------------------


@pytest.fixture
def h2c_echo(bg: BackgroundLoop) -> Iterator[H2cEcho]:
    pytest.importorskip("h2", reason="h2 (python-hyper) is not installed")
    echo = bg.run(
        H2cEcho(EchoIdentity("ns", "infra-backend-v1-local-0", "infra-backend-v1")).start()
    )
    yield echo
    bg.call(echo.close)


def test_h2c_request_reaches_the_h2c_echo(h2c_echo: H2cEcho) -> None:
    port = h2c_echo.state.port
    ex = send_h2("127.0.0.1", port, "GET", "/p?q=1", "gw.example:80", {"X-A": "b"}, 5, None)
    assert ex.error == "" and ex.status == 200 and ex.protocol == "H2C"
    echo = ex.echo
    assert echo["proto"] == "HTTP/2.0" and echo["path"] == "/p?q=1"
    assert echo["host"] == "gw.example:80" and echo["method"] == "GET"
    assert echo["headers"] == {"X-A": ["b"]}
    assert echo["pod"] == "infra-backend-v1-local-0" and echo["namespace"] == "ns"
    assert f"127.0.0.1:{port} (H2C)" in ex.describe_request()
    assert h2c_echo.state.received == ["/p?q=1"]


def test_h2c_echo_refuses_http1(h2c_echo: H2cEcho) -> None:
    ex = send("127.0.0.1", h2c_echo.state.port, "GET", "/", "gw.example", {}, 5)
    assert ex.error == "" and ex.status == 400 and ex.echo == {}


# --- gRPC echo, client and codec ---------------------------------------------------------------


def test_protobuf_codec_round_trip() -> None:
    ident = EchoIdentity("ns", "grpc-infra-backend-v1-local-1", "grpc-infra-backend-v1")
    raw = encode_echo_response("/S/Echo", [("x-a", "b"), ("x-a", "c")], "auth.example", ident)
    assert decode_echo_response(raw) == {
        "fullyQualifiedMethod": "/S/Echo",
        "headers": [["x-a", "b"], ["x-a", "c"]],
        "authority": "auth.example",
        "context": {
            "namespace": "ns",
            "ingress": "",
            "serviceName": "grpc-infra-backend-v1",
            "pod": "grpc-infra-backend-v1-local-1",
        },
    }
    # varints past one byte, fixed-width fields, and unknown fields are read or skipped
    assert pb_fields(bytes([0x08, 0xAC, 0x02, 0x15, 1, 0, 0, 0])) == {1: [300], 2: [1]}
    with pytest.raises(ValueError):
        pb_fields(bytes([0x0A, 0x05, 0x61]))


@pytest.fixture
def grpc_echo() -> Iterator[GrpcEcho]:
    pytest.importorskip("grpc", reason="grpcio is not installed")
    echo = GrpcEcho(EchoIdentity("ns", "grpc-infra-backend-v2-local-0", "grpc-infra-backend-v2"))
    echo.start()
    yield echo
    echo.close()


def test_grpc_call_reaches_the_grpc_echo(grpc_echo: GrpcEcho) -> None:
    port = grpc_echo.state.port
    meta = [("Version", "two"), ("Color", "blue")]
    ex = send_grpc("127.0.0.1", port, "EchoTwo", "foo.bar.com", meta, 5)
    assert ex.error == "" and ex.code == "OK", ex.describe_response()
    fqm = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/EchoTwo"
    assert ex.reply["fullyQualifiedMethod"] == fqm
    assert ex.reply["authority"] == "foo.bar.com"
    assert ["version", "two"] in ex.reply["headers"] and ["color", "blue"] in ex.reply["headers"]
    assert ex.pod == "grpc-infra-backend-v2-local-0"
    case = {
        "expect": {
            "code": "OK",
            "fullyQualifiedMethod": fqm,
            "backend": "grpc-infra-backend-v2",
            "namespace": "ns",
        }
    }
    assert compare_grpc(case, ex) == []
    case["expect"]["backend"] = "grpc-infra-backend-v1"
    assert compare_grpc(case, ex) == [
        "backend: expected a pod of 'grpc-infra-backend-v1', got 'grpc-infra-backend-v2-local-0'"
    ]
    assert grpc_echo.state.received == [fqm]


def test_grpc_echo_three_is_unimplemented(grpc_echo: GrpcEcho) -> None:
    ex = send_grpc("127.0.0.1", grpc_echo.state.port, "EchoThree", "", [], 5)
    assert ex.error == "" and ex.code == "UNIMPLEMENTED"
    assert compare_grpc({"expect": {"code": "UNIMPLEMENTED"}}, ex) == []
    assert compare_grpc({"expect": {"code": "OK"}}, ex)[0].startswith("code: expected OK")
