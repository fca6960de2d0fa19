"""A client that sends ``close_notify`` right after its request, over real TLS.

asyncio's and uvloop's SSL transports treat a received ``close_notify`` as the end of
the connection (TLS 1.2's rule): after ``eof_received`` they flush what was already
written, answer with their own ``close_notify`` and close, dropping any later write. A
response that is not ready at that moment can never reach the client, so Turnout stops
the upstream request at once (access log 499, HTTP/2 streams reset with CANCEL), closes
cleanly, and logs nothing per client (asyncio used to warn ``returning true from
eof_received() has no effect when using ssl`` for each one). See docs/tls.md.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.certs import CertificateAuthority
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.process import TurnoutProcess, free_port

CA = CertificateAuthority()
LEAF = CA.issue("example.org")
IO_TIMEOUT = 10.0  # the upstream answers after 30 s: a close before then was not held
WARNINGS = ("eof_received", "SSL connection is closed")


@pytest.fixture(scope="module")
def gw(
    serve_module: ServeFactory, echo_module: EchoFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TurnoutProcess, int, Path]]:
    port = free_port()
    log = tmp_path_factory.mktemp("access") / "access.log"
    listener = {
        "name": "https",
        "port": port,
        "protocol": "HTTPS",
        "tls": {"certificateRefs": [{"kind": "Secret", "name": "cert"}]},
    }
    proc = serve_module(
        dump(
            gateway(port=port, listeners=[listener]),
            LEAF.secret("cert"),
            backend("echo", echo_module("tls-echo").port),
            route("r", [to("echo")]),
        ),
        access_log=str(log),
    )
    yield proc, port, log


def send_then_close_notify(port: int, payload: bytes, alpn: str) -> tuple[bytes, bool]:
    """Handshake, send ``payload`` and ``close_notify`` in one write, then read until the
    server closes. Returns what was received and whether the server sent close_notify."""
    ctx = ssl.create_default_context(cadata=CA.cert_pem.decode())
    ctx.set_alpn_protocols([alpn])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="example.org")
    received: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:

        def pump_in() -> bool:
            data = sock.recv(65536)
            if not data:
                incoming.write_eof()
                return False
            incoming.write(data)
            return True

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                assert pump_in(), "the server closed during the handshake"
        assert tls.selected_alpn_protocol() == alpn
        tls.write(payload)
        try:
            tls.unwrap()  # sends close_notify, then wants the server's
        except ssl.SSLWantReadError:
            pass
        sock.sendall(outgoing.read())
        while True:
            try:
                chunk = tls.read(65536)
            except ssl.SSLWantReadError:
                if not pump_in():
                    return b"".join(received), False
                continue
            except ssl.SSLZeroReturnError:
                return b"".join(received), True
            if not chunk:
                return b"".join(received), True
            received.append(chunk)


def access_statuses(log: Path, path: str) -> list[int]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("path") == path:  # the target, query included
            out.append(int(entry["status"]))
    return out


def test_http1_close_notify_after_the_request_cancels_it_cleanly(
    gw: tuple[TurnoutProcess, int, Path],
) -> None:
    proc, port, log = gw
    path = "/slow-h1?delay=30s"
    request = f"GET {path} HTTP/1.1\r\nHost: example.org\r\n\r\n".encode()

    data, clean = send_then_close_notify(port, request, "http/1.1")

    assert data == b"", "nothing can be written after close_notify"
    assert clean, "the server answers close_notify with its own"
    wait_until(lambda: access_statuses(log, path) == [499], timeout=IO_TIMEOUT)
    assert not any(w in proc.stderr() for w in WARNINGS), proc.stderr()[-2000:]


def test_http2_close_notify_after_the_request_resets_the_stream(
    gw: tuple[TurnoutProcess, int, Path],
) -> None:
    proc, port, log = gw
    path = "/slow-h2?delay=30s"
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.org"),
        (":path", path),
    ]
    client.send_headers(1, headers, end_stream=True)

    data, clean = send_then_close_notify(port, client.data_to_send(), "h2")

    events = client.receive_data(data)
    resets = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, h2.errors.ErrorCodes.CANCEL)]
    assert not any(isinstance(e, h2.events.ResponseReceived) for e in events)
    assert clean
    wait_until(lambda: access_statuses(log, path) == [499], timeout=IO_TIMEOUT)
    assert not any(w in proc.stderr() for w in WARNINGS), proc.stderr()[-2000:]
