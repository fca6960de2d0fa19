"""``turnout connect`` and ``turnout port-forward`` as a developer runs them: a real CLI
process holding a WebSocket tunnel to a real server with two workers."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.process import TurnoutProcess
from turnout.testing.requests import get


class CliProcess:
    """``python -m turnout ARGS`` in the background, its output read line by line."""

    def __init__(self, proc: TurnoutProcess, *args: str) -> None:
        env = {
            **os.environ,
            "TURNOUT_SERVER": proc.admin,
            "TURNOUT_DATA_DIR": str(proc.data_dir),
        }
        env.pop("TURNOUT_TOKEN", None)
        self.p = subprocess.Popen(
            [sys.executable, "-m", "turnout", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout}s; got {seen}")

    def stop(self) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
        code = self.p.wait()
        self.reader.join(5)
        if self.p.stdout is not None:
            self.p.stdout.close()
        return code


@pytest.fixture
def env(serve: ServeFactory, port: int, echo: EchoFactory) -> Iterator[dict[str, Any]]:
    base, laptop = echo("orders-base"), echo("orders-laptop")
    local = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": "dev"},
        "spec": {"routingKey": "dev", "overrides": [{"backend": "orders", "local": {}}]},
    }
    proc = serve(
        dump(gateway(port=port), backend("orders", base.port), route("r", [to("orders", "/")])),
        workers=2,
    )
    assert proc.api("POST", "/api/v1/namespaces/default/sandboxes", local)[0] == 201
    clis: list[CliProcess] = []

    def cli(*args: str) -> CliProcess:
        c = CliProcess(proc, *args)
        clis.append(c)
        return c

    yield {"proc": proc, "port": port, "laptop": laptop, "cli": cli}
    for c in clis:
        c.stop()


def _pod(port: int, keyed: bool) -> tuple[int, str]:
    headers = {"x-turnout-routing-key": "dev"} if keyed else {}
    reply = get(port, "/orders", headers)
    return reply.status, reply.json().get("pod", "") if reply.is_json else ""


def test_connect_serves_keyed_requests_from_the_laptop(env: dict[str, Any]) -> None:
    port, laptop = env["port"], env["laptop"]
    # nobody connected yet: keyed requests fail fast, plain ones are untouched
    assert _pod(port, True)[0] == 502
    assert _pod(port, False) == (200, "orders-base")
    first = env["cli"]("connect", "dev", "--backend", "orders", "--port", str(laptop.port))
    first.expect("connected: requests for Backend orders")
    # both workers reach the laptop (a new connection per request spreads them)
    assert {_pod(port, True) for _ in range(10)} == {(200, "orders-laptop")}
    assert _pod(port, False) == (200, "orders-base")
    # a second developer cannot take the same backend over
    second = env["cli"]("connect", "dev", "--backend", "orders", "--port", str(laptop.port))
    second.expect("already connected by token:bootstrap-admin")
    assert second.p.wait(10) == 1
    # Ctrl-C cleans up: the gateway stops listening for the laptop
    assert first.stop() == 0
    wait_until(lambda: _pod(port, True)[0] == 502, 5.0)


def test_connect_refusals_are_final(env: dict[str, Any]) -> None:
    laptop = env["laptop"]
    no_sandbox = env["cli"]("connect", "nope", "--backend", "orders", "--port", str(laptop.port))
    no_sandbox.expect("Sandbox default/nope not found")
    assert no_sandbox.p.wait(10) == 1
    not_local = env["cli"]("connect", "dev", "--backend", "payments", "--port", "1")
    not_local.expect("has no 'local' override for backend 'payments'")
    assert not_local.p.wait(10) == 1


def test_port_forward_reaches_a_backend(env: dict[str, Any], tmp_path: Path) -> None:
    fwd = env["cli"]("port-forward", "orders", "0")
    line = fwd.expect("forwarding 127.0.0.1:")
    local = int(line.split("127.0.0.1:")[1].split()[0])
    reply = get(local, "/hello")
    body = reply.json()
    assert reply.status == 200 and body["pod"] == "orders-base" and body["path"] == "/hello"
    assert fwd.stop() == 0


def test_connect_reconnects_after_the_server_restarts(env: dict[str, Any]) -> None:
    proc: TurnoutProcess = env["proc"]
    port, laptop = env["port"], env["laptop"]
    cli = env["cli"]("connect", "dev", "--backend", "orders", "--port", str(laptop.port))
    cli.expect("connected: requests for Backend orders")
    assert _pod(port, True) == (200, "orders-laptop")
    proc.stop()
    cli.expect("reconnecting in", timeout=15)
    proc.start()  # same ports and data dir: the stored Sandbox is still there
    cli.expect("reconnected", timeout=15)
    wait_until(lambda: _pod(port, True) == (200, "orders-laptop"), 10)
