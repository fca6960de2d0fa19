"""An upstream endpoint frozen (``SIGSTOP``) or black-holed (accepts, never answers)
under load, through a real gateway: the documented behaviour (docs/traffic.md, "Retries"
and "passive" health) is that an attempt that gets no answer within ``perRetry.timeout``
is retried on another endpoint, and outlier detection ejects the silent endpoint. So
every request is answered, 200, before the client's own bound; nothing is lost; and a
frozen endpoint that resumes serves again once its ejection ends.

(PostgreSQL and Redis faults live beside their code: tests/integration/control/
test_store_outage.py and test_replicas.py, tests/integration/ratelimit/.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get

CLIENT_BOUND = 5.0  # seconds a client waits: every request must be answered within it

# A keep-alive HTTP/1.1 upstream in its own process, so the test can SIGSTOP it.
UPSTREAM = r"""
import asyncio, json, sys
BODY = json.dumps({"pod": sys.argv[2]}).encode()
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
REPLY = HEAD % len(BODY) + BODY
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(REPLY)
            await writer.drain()
    except Exception:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Frozen:
    """An upstream process that ``freeze()`` stops (SIGSTOP) and ``thaw()`` resumes."""

    def __init__(self, pod: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", UPSTREAM, str(self.port), pod], stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == b"ready\n"

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        self.thaw()
        self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class BlackHole:
    """Accepts connections and reads them, never answers a byte."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)

    def freeze(self) -> None:
        pass  # always silent

    def thaw(self) -> None:
        pass

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture(params=["sigstop", "blackhole"])
def silent(request: pytest.FixtureRequest) -> Iterator[Frozen | BlackHole]:
    peer: Frozen | BlackHole = Frozen("silent-0") if request.param == "sigstop" else BlackHole()
    yield peer
    peer.close()


def load(port: int, seconds: float, lanes: int = 4) -> tuple[int, list[str]]:
    """``lanes`` clients in a loop for ``seconds``: (answers, failures); prints the
    answers' latency figures (for docs/reliability.md; never asserted)."""
    answered = [0]
    took: list[float] = []
    failures: list[str] = []
    stop = time.monotonic() + seconds

    def lane() -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                reply = get(port, "/", timeout=CLIENT_BOUND)
                took.append(time.monotonic() - started)
            except OSError as exc:  # includes socket.timeout: the bound was exceeded
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if reply.status != 200:
                failures.append(f"{reply.status} {reply.body[:120]!r}")
            answered[0] += 1

    threads = [threading.Thread(target=lane) for _ in range(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + CLIENT_BOUND + 5)
    took.sort()
    if took:
        p50, p99 = took[len(took) // 2], took[int(len(took) * 0.99)]
        print(
            f"{len(took)} answers: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {took[-1] * 1000:.0f} ms"
        )
    return answered[0], failures


def test_a_silent_upstream_under_load_is_retried_around_and_ejected(
    serve: ServeFactory, port: int, echo: EchoFactory, silent: Frozen | BlackHole, tmp_path: Path
) -> None:
    healthy = echo("healthy-0")
    shop = backend(
        "shop",
        silent.port,
        healthy.port,
        retry={
            "numRetries": 2,
            "retryOn": {"triggers": ["connect-failure", "reset", "gateway-error"]},
            "perRetry": {"timeout": "300ms"},
            "budget": {"percent": 100, "minRetryConcurrency": 8},
        },
        healthCheck={
            "passive": {
                "consecutiveGatewayErrors": 2,
                "baseEjectionTime": "1s",
                "interval": "1s",
                "maxEjectionPercent": 50,
            }
        },
    )
    serve(dump(gateway(port=port), shop, route("r", [to("shop")])))
    seen: set[str] = set()
    wait_until(
        lambda: (
            seen.add(get(port, "/").json()["pod"])
            or len(seen) == 2
            or isinstance(silent, BlackHole)
        ),
        10.0,
        "both endpoints to serve before the fault",
    )
    silent.freeze()
    answered, failures = load(port, 2.0)
    assert failures == [], failures[:5]
    assert answered > 20
    silent.thaw()
    if isinstance(silent, Frozen):  # recovery: it serves again once the ejection ends
        wait_until(
            lambda: get(port, "/").json()["pod"] == "silent-0", 15.0, "the thawed endpoint back"
        )
