"""Hot reload: file changes and SIGHUP apply new revisions atomically; invalid configs
never replace a working one; listeners come and go; no request fails across reloads."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.certs import weak_rsa_leaf
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get


def _manifest(gw: TurnoutProcess) -> Path:
    return gw.config / "gateway.yaml"


def _tagged(port: int, echo_port: int, tag: str) -> str:
    rule = to("echo", "/")
    rule["filters"] = [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "x-tag", "value": tag}]},
        }
    ]
    return dump(gateway("gw", port), backend("echo", echo_port), route("r", [rule]))


def test_file_change_applies_a_new_revision(echo: EchoFactory, serve: ServeFactory) -> None:
    port, up = free_port(), echo()
    gw = serve(_tagged(port, up.port, "one"))
    assert get(port).headers["x-tag"] == "one"
    _manifest(gw).write_text(_tagged(port, up.port, "two"))
    wait_until(lambda: get(port).headers.get("x-tag") == "two", 10, "the new revision")
    assert gw.status()["revision"] == 2
    assert gw.metric("turnout_config_reloads_total", result="success") == 1
    assert gw.metric("turnout_config_revision") == 2


def test_an_invalid_change_keeps_the_old_revision(echo: EchoFactory, serve: ServeFactory) -> None:
    port, up = free_port(), echo()
    gw = serve(_tagged(port, up.port, "good"))
    broken = _tagged(port, up.port, "bad").replace("backendRefs:", "backendRefz:")
    _manifest(gw).write_text(broken)
    wait_until(
        lambda: gw.metric("turnout_config_reloads_total", result="failure") >= 1, 10, "rejection"
    )
    reply = get(port)
    assert reply.status == 200 and reply.headers["x-tag"] == "good"
    assert gw.status()["revision"] == 1
    line = broken.splitlines().index(next(x for x in broken.splitlines() if "backendRefz" in x)) + 1
    assert f"gateway.yaml:{line}:" in gw.stderr()
    assert "spec.rules[0].backendRefz: unknown field" in gw.stderr()
    assert "still serving revision 1" in gw.stderr()


def test_sighup_reloads_without_a_file_watcher(echo: EchoFactory, serve: ServeFactory) -> None:
    port, up = free_port(), echo()
    gw = serve(_tagged(port, up.port, "one"), args=["--no-watch"])
    _manifest(gw).write_text(_tagged(port, up.port, "two"))
    time.sleep(0.5)
    assert get(port).headers["x-tag"] == "one"  # no watcher: nothing changes by itself
    gw.reload()
    wait_until(lambda: get(port).headers.get("x-tag") == "two", 10, "SIGHUP reload")


def test_listeners_are_added_and_removed_by_reload(echo: EchoFactory, serve: ServeFactory) -> None:
    port, extra, up = free_port(), free_port(), echo()
    gw = serve(dump(gateway("gw", port), backend("echo", up.port), route("r", [to("echo")])))
    two = gateway(
        "gw",
        port,
        listeners=[
            {"name": "http", "port": port, "protocol": "HTTP"},
            {"name": "extra", "port": extra, "protocol": "HTTP"},
        ],
    )
    _manifest(gw).write_text(dump(two, backend("echo", up.port), route("r", [to("echo")])))
    gw.wait_ready(revision=2)
    assert get(extra).status == 200
    _manifest(gw).write_text(
        dump(gateway("gw", port), backend("echo", up.port), route("r", [to("echo")]))
    )
    gw.wait_ready(revision=3)
    wait_until(lambda: _refused(extra), 10, "the removed listener to close")
    assert get(port).status == 200


def _refused(port: int) -> bool:
    try:
        get(port)
    except ConnectionRefusedError:
        return True
    return False


def test_a_bind_failure_rejects_the_reload(echo: EchoFactory, serve: ServeFactory) -> None:
    import socket

    port, up = free_port(), echo()
    gw = serve(dump(gateway("gw", port), backend("echo", up.port), route("r", [to("echo")])))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        two = gateway(
            "gw",
            port,
            listeners=[
                {"name": "http", "port": port, "protocol": "HTTP"},
                {"name": "busy", "port": busy, "protocol": "HTTP"},
            ],
        )
        _manifest(gw).write_text(dump(two, backend("echo", up.port), route("r", [to("echo")])))
        wait_until(
            lambda: gw.metric("turnout_config_reloads_total", result="failure") >= 1,
            10,
            "rejection",
        )
    assert gw.status()["revision"] == 1
    assert f"cannot listen on 127.0.0.1:{busy}" in gw.stderr()
    assert get(port).status == 200


def test_tls_material_a_worker_would_refuse_rejects_the_reload(
    echo: EchoFactory, serve: ServeFactory, tmp_path: Path
) -> None:
    """The trial build compiles exactly what a worker compiles (TLS contexts included), so
    a revision every worker would fail to apply is refused before it reaches them."""
    weak = weak_rsa_leaf()
    cert, key = weak.write(tmp_path, "client")
    try:
        ssl.create_default_context().load_cert_chain(cert, key)
        pytest.skip("this OpenSSL accepts 1024-bit RSA keys (security level below 2)")
    except ssl.SSLError:
        pass
    port, up = free_port(), echo()
    gw = serve(_tagged(port, up.port, "good"))
    tls = {"clientCertificateFile": str(cert), "clientKeyFile": str(key)}
    rule = to("echo", "/")
    bad = dump(
        gateway("gw", port),
        backend("echo", up.port),
        backend("secure", up.port, tls={**tls, "insecureSkipVerify": True}),
        route("r", [rule, to("secure", "/secure")]),
    )
    _manifest(gw).write_text(bad)
    wait_until(
        lambda: gw.metric("turnout_config_reloads_total", result="failure") >= 1, 10, "rejection"
    )
    status = gw.status()
    assert status["revision"] == 1 and status["ready"]
    assert all(w["revision"] == 1 and w["error"] is None for w in status["workers"])
    assert "Backend default/secure: spec.tls.clientCertificateFile" in status["last_reload_error"]
    line = bad.splitlines().index(next(x for x in bad.splitlines() if "clientCertificateFile" in x))
    assert f"gateway.yaml:{line + 1}:" in gw.stderr()
    reply = get(port)
    assert reply.status == 200 and reply.headers["x-tag"] == "good"


@pytest.mark.slow
def test_no_request_fails_across_100_reloads_under_load(
    echo: EchoFactory, serve: ServeFactory
) -> None:
    port, up = free_port(), echo()
    gw = serve(_tagged(port, up.port, "t0"), workers=2, args=["--no-watch"])
    stop = threading.Event()
    failures: list[str] = []
    counts = [0, 0]

    def keepalive_client(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                reply = get(port, "/k", conn=conn)
                if reply.status != 200 or reply.json()["path"] != "/k":
                    failures.append(f"keep-alive status {reply.status}")
                counts[slot] += 1
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"keep-alive {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    def fresh_client(slot: int) -> None:
        while not stop.is_set():
            try:
                status = get(port, "/n").status
                if status != 200:
                    failures.append(f"new-connection status {status}")
                counts[slot] += 1
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"new-connection {exc!r}")

    threads = [
        threading.Thread(target=keepalive_client, args=(0,)),
        threading.Thread(target=fresh_client, args=(1,)),
    ]
    for t in threads:
        t.start()
    try:
        for i in range(1, 101):
            _manifest(gw).write_text(_tagged(port, up.port, f"t{i}"))
            gw.reload()
            gw.wait_ready(revision=i + 1, timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert gw.status()["revision"] == 101
    assert failures == []
    assert min(counts) > 100  # both clients really ran during the reloads
