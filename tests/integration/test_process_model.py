"""Supervisor and workers: crashed and hung workers are replaced, SIGTERM drains."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing import BackgroundLoop, TurnoutProcess, free_port
from turnout.testing.certs import weak_rsa_leaf
from turnout.testing.faults import start_faults
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get

STRIP = {
    "type": "URLRewrite",
    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
}


def _config(port: int, echo_port: int, faults_port: int) -> str:
    return dump(
        gateway("gw", port),
        backend("echo", echo_port),
        backend("faults", faults_port),
        route("r", [to("echo", "/"), to("faults", "/f", filters=[STRIP])]),
    )


def _get(port: int, path: str = "/x", timeout: float = 10) -> int:
    return get(port, path, timeout=timeout).status


@pytest.fixture
def faults_port(bg: BackgroundLoop) -> Iterator[int]:
    server, state = bg.run(start_faults())
    yield state.port
    bg.call(server.close)


def test_a_crashed_worker_is_replaced(
    echo: EchoFactory, serve: ServeFactory, faults_port: int
) -> None:
    port = free_port()
    gw = serve(_config(port, echo().port, faults_port), workers=2)
    victim, survivor = gw.worker_pids()
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: gw.status()["ready"] and victim not in gw.worker_pids(),
        20,
        "a replacement worker",
    )
    assert survivor in gw.worker_pids()
    assert all(_get(port) == 200 for _ in range(20))
    assert gw.metric("turnout_worker_restarts_total") == 1


def test_a_hung_worker_is_killed_and_replaced(
    echo: EchoFactory, serve: ServeFactory, faults_port: int
) -> None:
    port = free_port()
    gw = serve(_config(port, echo().port, faults_port), workers=2, args=["--worker-timeout", "2s"])
    victim, _ = gw.worker_pids()
    os.kill(victim, signal.SIGSTOP)  # the process lives but its loop answers nothing
    try:
        wait_until(
            lambda: victim not in gw.worker_pids() and gw.status()["ready"], 20, "replacement"
        )
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    assert "has not answered" in gw.stderr()
    assert _get(port) == 200


def test_sigterm_finishes_in_flight_requests_and_exits_0(
    echo: EchoFactory, serve: ServeFactory, faults_port: int
) -> None:
    port = free_port()
    gw = serve(_config(port, echo().port, faults_port))
    results: list[int] = []
    slow = threading.Thread(target=lambda: results.append(_get(port, "/f/sleep/2")))
    slow.start()
    time.sleep(0.5)  # the request is in flight
    idle = socket.create_connection(("127.0.0.1", port))  # an idle keep-alive client
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    idle.settimeout(5)
    assert idle.recv(1) == b""  # idle connections are closed at once
    idle.close()
    slow.join(10)
    assert results == [200]
    assert gw.proc.wait(15) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_drain_timeout_bounds_shutdown(
    echo: EchoFactory, serve: ServeFactory, faults_port: int
) -> None:
    port = free_port()
    gw = serve(_config(port, echo().port, faults_port), args=["--drain-timeout", "1s"])
    outcome: list[object] = []

    def stuck() -> None:
        try:
            outcome.append(_get(port, "/f/sleep/30", timeout=20))
        except (ConnectionError, http.client.RemoteDisconnected) as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=stuck)
    thread.start()
    time.sleep(0.5)
    assert gw.proc is not None
    started = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(15) == 0
    assert time.monotonic() - started < 8  # grace 1 s plus process teardown
    thread.join(10)
    assert outcome and outcome[0] != 200  # the stuck request was cut, not answered


def test_startup_fails_cleanly_on_a_bad_config(tmp_path: Path) -> None:
    conf = tmp_path / "c"
    conf.mkdir()
    (conf / "bad.yaml").write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        "metadata: {name: r}\nspec:\n  rulez: []\n"
    )
    proc = TurnoutProcess(conf)
    proc.start(expect_ready=False)
    assert proc.proc is not None
    assert proc.proc.wait(20) == 2
    proc.stop()
    assert "bad.yaml:5:3: HTTPRoute default/r: spec.rulez: unknown field" in proc.stderr()


def test_startup_fails_cleanly_on_tls_material_a_worker_would_refuse(
    tmp_path: Path, echo: EchoFactory
) -> None:
    weak = weak_rsa_leaf()
    cert, key = weak.write(tmp_path, "client")
    try:
        ssl.create_default_context().load_cert_chain(cert, key)
        pytest.skip("this OpenSSL accepts 1024-bit RSA keys (security level below 2)")
    except ssl.SSLError:
        pass
    conf = tmp_path / "c"
    conf.mkdir()
    tls = {"clientCertificateFile": str(cert), "clientKeyFile": str(key)}
    (conf / "gw.yaml").write_text(
        dump(
            gateway("gw", free_port()),
            backend("secure", echo().port, tls={**tls, "insecureSkipVerify": True}),
            route("r", [to("secure")]),
        )
    )
    proc = TurnoutProcess(conf)
    proc.start(expect_ready=False)
    assert proc.proc is not None
    assert proc.proc.wait(20) == 2
    proc.stop()
    assert "gw.yaml:" in proc.stderr()
    assert "Backend default/secure: spec.tls.clientCertificateFile" in proc.stderr()


def test_startup_fails_cleanly_when_the_port_is_taken(tmp_path: Path, echo: EchoFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "c"
        conf.mkdir()
        (conf / "gw.yaml").write_text(_config(port, echo().port, 1))
        proc = TurnoutProcess(conf)
        proc.start(expect_ready=False)
        assert proc.proc is not None
        assert proc.proc.wait(20) == 2
        proc.stop()
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr()
