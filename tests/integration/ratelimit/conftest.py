"""Fixtures for the rate-limit integration tests: hammer processes and a private Redis.

- ``redis_server``: a ``redis-server`` of its own on a free loopback port (``--save ''
  --appendonly no``, its files in ``tmp_path``), so tests may ``SIGSTOP`` it without
  disturbing anything else. It fails with a clear message when ``redis-server`` is not
  installed. On teardown it is resumed (``SIGCONT``) and terminated.
- ``hammer``: ``hammer(n, mode, target, algorithm, calls, keys)`` starts ``n`` processes of
  ``hammer.py``, waits until every one is ready, releases them together and returns
  their JSON reports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from turnout.testing import free_port

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; the rate-limit tests need it", pytrace=False)
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, *args, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, proc)
    try:
        deadline = time.monotonic() + 10.0
        while not _ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}", pytrace=False)
            time.sleep(0.02)
        yield server
    finally:
        if proc.poll() is None:
            server.resume()
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


Hammer = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def hammer() -> Hammer:
    def run(n: int, mode: str, target: str, algorithm: str, calls: int, keys: int) -> list[Any]:
        cmd = [sys.executable, "-m", "tests.integration.ratelimit.hammer", mode, target]
        cmd += [algorithm, str(calls), str(keys)]
        procs = [
            subprocess.Popen(
                cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            for _ in range(n)
        ]
        try:
            for p in procs:
                assert p.stdout is not None
                assert p.stdout.readline().strip() == "ready"
            for p in procs:  # release them together
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            reports = []
            for p in procs:
                out, _ = p.communicate(timeout=90)
                assert p.returncode == 0, f"hammer exited {p.returncode}"
                reports.append(json.loads(out.strip().splitlines()[-1]))
            return reports
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    return run
