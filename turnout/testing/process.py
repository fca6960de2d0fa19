"""``TurnoutProcess``: a real ``turnout serve`` subprocess for integration tests.

It writes nothing into the package; manifests live in a directory the test owns, the
admin API listens on a free loopback port, and ``start`` waits for ``/readyz``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class TurnoutProcess:
    def __init__(
        self,
        config: Path,
        workers: int = 1,
        extra_args: list[str] | None = None,
        access_log: str = "off",
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        store: str = "",
        use_files: bool = True,
    ) -> None:
        self.config = config  # a manifest file or directory; with use_files=False only the
        self.use_files = use_files  # place for logs and data (e.g. with --kubernetes)
        self.workers = workers
        self.admin_port = free_port()
        self.extra_args = list(extra_args or [])
        self.access_log = access_log
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = config.parent / f"turnout-{self.admin_port}.stderr"
        # Every test server gets its own store and bootstrap token unless told otherwise.
        self.data_dir = data_dir or config.parent / f"data-{self.admin_port}"
        self.store = store

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 20.0, expect_ready: bool = True) -> TurnoutProcess:
        cmd = [
            sys.executable,
            "-m",
            "turnout",
            "serve",
            *(["-f", str(self.config)] if self.use_files else []),
            "--workers",
            str(self.workers),
            "--admin-address",
            f"127.0.0.1:{self.admin_port}",
            "--access-log",
            self.access_log,
            "--data-dir",
            str(self.data_dir),
            *(["--store", self.store] if self.store else []),
            *self.extra_args,
        ]
        env = {**os.environ, "TURNOUT_LOG_LEVEL": "info", **self.env}
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env)
        if expect_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0, revision: int | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"turnout exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                status = self.status()
            except (OSError, urllib.error.URLError) as exc:
                last = exc
            else:
                last = status
                if status["ready"] and (revision is None or status["revision"] >= revision):
                    return status
            time.sleep(0.05)
        raise TimeoutError(f"turnout not ready after {timeout}s (last: {last}):\n{self.stderr()}")

    def status(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"{self.admin}/readyz", timeout=2) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.admin}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += float(value)
        return total

    @property
    def token(self) -> str:
        """The bootstrap admin token the server wrote into its data dir."""
        return (self.data_dir / "admin-token").read_text().strip()

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        """Call the admin API: ``(status, decoded JSON body)``; never raises on HTTP errors."""
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.admin}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token if token is None else token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                code = resp.status
        except urllib.error.HTTPError as exc:
            raw, code = exc.read(), exc.code
        return code, (json.loads(raw) if raw else None)

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.status()["workers"]]

    def __enter__(self) -> TurnoutProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
