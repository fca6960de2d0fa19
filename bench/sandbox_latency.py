#!/usr/bin/env python3
"""Sandbox create → routable: how long until a new Sandbox routes in every worker.

Starts ``turnout serve`` (2 workers, SQLite store in a temp dir) with one Backend and
route, plus two echo services (baseline and override), then creates N Sandboxes one
after another through the admin API (they accumulate, so the last create compiles a
snapshot with N-1 others). For each it records:

* **all workers**: from sending the POST until ``status.routable.allWorkersSince`` — the
  wall-clock time the last worker applied the store revision holding the sandbox (the
  workers stamp it; this process reads it back). Same host, same clock.
* **first keyed request**: from sending the POST until a request carrying the new key
  is first answered by the override (polled every 2 ms; whichever worker takes it).

    python bench/sandbox_latency.py            # 100 creates
    python bench/sandbox_latency.py -n 300 --workers 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess, free_port


def _echo(name: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnout.samples.echo", "--port", str(port), "--name", name],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening on"
    return proc, port


def _pod(port: int, key: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"x-turnout-routing-key": key})
        resp = conn.getresponse()
        body = resp.read()
        return str(json.loads(body).get("pod", "")) if resp.status == 200 else ""
    finally:
        conn.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100, help="sandboxes to create")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    base, base_port = _echo("base")
    dev, dev_port = _echo("dev")
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "conf"
        conf.mkdir()
        gw_port = free_port()
        (conf / "gateway.yaml").write_text(
            dump(gateway(port=gw_port), backend("orders", base_port), route("r", [to("orders")]))
        )
        proc = TurnoutProcess(conf, workers=args.workers).start()
        all_workers: list[float] = []
        first_hit: list[float] = []
        try:
            for i in range(args.n):
                key = f"bench-{i}"
                manifest = {
                    "apiVersion": "turnout.dev/v1alpha1",
                    "kind": "Sandbox",
                    "metadata": {"name": key},
                    "spec": {
                        "routingKey": key,
                        "overrides": [
                            {
                                "backend": "orders",
                                "endpoints": [{"address": f"127.0.0.1:{dev_port}"}],
                            }
                        ],
                    },
                }
                sent = time.time()
                code, body = proc.api("POST", "/api/v1/namespaces/default/sandboxes", manifest)
                assert code == 201, body
                while _pod(gw_port, key) != "dev-local-0":
                    time.sleep(0.002)
                first_hit.append(time.time() - sent)
                since: Any = None
                deadline = time.time() + 10
                while since is None and time.time() < deadline:
                    status = proc.api("GET", f"/api/v1/namespaces/default/sandboxes/{key}")[1]
                    since = status["status"]["routable"]["allWorkersSince"]
                    if since is None:
                        time.sleep(0.01)
                assert since is not None, f"{key} not routable in all workers within 10 s"
                all_workers.append(datetime.fromisoformat(since).timestamp() - sent)
        finally:
            proc.stop()
            base.terminate()
            dev.terminate()

    def row(name: str, values: list[float]) -> str:
        ms = [v * 1000 for v in values]
        return (
            f"| {name} | {statistics.median(ms):.0f} ms | {pct(ms, 0.99):.0f} ms "
            f"| {max(ms):.0f} ms |"
        )

    print(f"{args.n} creates, {args.workers} workers, git {_git()}")
    print("| measure | median | p99 | max |")
    print("|---|---|---|---|")
    print(row("POST → routable in all workers (status)", all_workers))
    print(row("POST → first keyed request answered by the override", first_hit))


def _git() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "?"


if __name__ == "__main__":
    main()
