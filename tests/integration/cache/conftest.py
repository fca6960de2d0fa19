"""Fixtures for the cache tests: an origin whose answers each test scripts.

``origin()`` starts a threaded HTTP/1.1 server on a free loopback port. ``origin.answer(path,
status, headers, body, delay)`` sets what a path answers; every request is counted per
path (``origin.hits[path]``) and its request fields are kept (``origin.seen[path]``, the
last one). An ``If-None-Match`` equal to the scripted ``ETag`` is answered 304 (counted
in ``origin.not_modified``), as a real origin would.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from turnout.testing import free_port
from turnout.testing.process import TurnoutProcess


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"hello"
    delay: float = 0.0


class Origin:
    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.hits: dict[str, int] = {}
        self.not_modified = 0
        self.seen: dict[str, dict[str, str]] = {}
        self.bodies: dict[str, bytes] = {}
        self.lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path
                with origin.lock:
                    origin.hits[path] = origin.hits.get(path, 0) + 1
                    origin.seen[path] = {k.lower(): v for k, v in self.headers.items()}
                    answer = origin.answers.get(path.split("?")[0], Answer())
                if answer.delay:
                    time.sleep(answer.delay)
                etag = answer.headers.get("ETag")
                if etag is not None and self.headers.get("If-None-Match") == etag:
                    with origin.lock:
                        origin.not_modified += 1
                    self.send_response(304)
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    return
                self.send_response(answer.status)
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_HEAD = do_GET

            def do_POST(self) -> None:
                # echo what arrived: the body's size and digest, and its framing
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            break
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    body = b"".join(parts)
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with origin.lock:
                    origin.hits[self.path] = origin.hits.get(self.path, 0) + 1
                    origin.seen[self.path] = {k.lower(): v for k, v in self.headers.items()}
                    origin.bodies[self.path] = body
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(
        self,
        path: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: bytes = b"hello",
        delay: float = 0.0,
    ) -> None:
        self.answers[path] = Answer(status, headers or {}, body, delay)

    def count(self, path: str) -> int:
        with self.lock:
            return sum(n for p, n in self.hits.items() if p.split("?")[0] == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def origin_module() -> Iterator[Origin]:
    o = Origin()
    yield o
    o.close()


class RedisProcess:
    """A ``redis-server`` of the test's own on a fixed free port: stopped (SIGKILL) and
    started again on the same port by the test; never the shared one."""

    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [self.binary, *args, "--dir", self.directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while not _ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {self.port}", pytrace=False)
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(str(tmp_path))
    server.start()
    yield server
    server.kill()


# Gateways for these tests: like tests/conftest.py's ``serve`` / ``serve_module``, with a
# longer start-up allowance (workers import slowly on a loaded machine).
START_TIMEOUT = 90.0
Serve = Callable[..., TurnoutProcess]


def _factory(make_dir: Callable[[], Path], procs: list[TurnoutProcess]) -> Serve:
    def start(config: str, workers: int = 1, args: list[str] | None = None) -> TurnoutProcess:
        conf_dir = make_dir()
        (conf_dir / "gateway.yaml").write_text(config)
        proc = TurnoutProcess(conf_dir, workers=workers, extra_args=args)
        procs.append(proc)
        return proc.start(timeout=START_TIMEOUT)

    return start


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    procs: list[TurnoutProcess] = []
    counter = iter(range(1000))

    def make_dir() -> Path:
        d = tmp_path / f"conf{next(counter)}"
        d.mkdir()
        return d

    yield _factory(make_dir, procs)
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="module")
def serve_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    procs: list[TurnoutProcess] = []
    yield _factory(lambda: tmp_path_factory.mktemp("conf"), procs)
    for proc in procs:
        proc.stop()
