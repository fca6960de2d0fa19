#!/usr/bin/env python3
"""Response caching: cache-hit RPS and CPU per request, Turnout beside nginx proxy_cache.

    .venv/bin/python bench/cache.py [--duration 10] [--reps 3] [--connections 64]

One nginx upstream (CPU 0, with wrk and this script) answers every path with a 100-byte
body and ``Cache-Control: public, max-age=3600``; ``/nostore/…`` answers ``no-store``.
Under test, one at a time on CPU 1 (``taskset``), access logs off:

* ``nginx proxy_cache`` — 1 worker, ``proxy_cache`` (keys_zone in memory, files under the
  run directory; the hit's file is in the page cache), keep-alive upstream pool;
* ``turnout cache hit`` — 1 worker, a TrafficPolicy ``cache`` (memory tier) on the route;
* ``turnout cache miss`` — the same gateway on ``/nostore/…``: every request is looked
  up, goes upstream, and is not stored (the cost of a miss is this row minus the next);
* ``turnout no cache`` — the same request through a route without the policy.

Each row runs wrk ``-t1 -c{connections}`` for ``--duration`` s, ``--reps`` times (the
median reported); CPU per request is the proxy processes' utime+stime (/proc) over the
run divided by the requests wrk counted. The ratio turnout/nginx of hit RPS is printed
last. Helpers (process sessions, wrk, /proc) come from ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import run as harness  # bench/run.py (this directory is on sys.path when run as a script)

UPSTREAM_CONF = """\
worker_processes 1;
daemon off;
pid {run}/upstream.pid;
error_log {run}/upstream-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {run}/tmp/up-body;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        default_type text/plain;
        location /nostore/ {{
            add_header Cache-Control "no-store";
            return 200 "{body}\\n";
        }}
        location / {{
            add_header Cache-Control "public, max-age=3600";
            return 200 "{body}\\n";
        }}
    }}
}}
"""

NGINX_CACHE_CONF = """\
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {run}/tmp/body;
    proxy_temp_path {run}/tmp/proxy;
    proxy_cache_path {run}/tmp/cache levels=1:2 keys_zone=bench:10m max_size=64m;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream backend {{
        server {upstream};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_lock on;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""

TURNOUT_CONF = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench}}
spec:
  gatewayClassName: turnout
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - {{name: http, port: {port}, protocol: HTTP}}
---
apiVersion: turnout.dev/v1alpha1
kind: Backend
metadata: {{name: upstream}}
spec:
  endpoints: [{{address: "{upstream}"}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: cached}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
    backendRefs: [{{name: upstream, kind: Backend, group: turnout.dev}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: plain}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /plain}}}}]
    backendRefs: [{{name: upstream, kind: Backend, group: turnout.dev}}]
---
apiVersion: turnout.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: cache}}
spec:
  targetRefs: [{{kind: HTTPRoute, name: cached}}]
  cache: {{memorySize: 64Mi}}
"""

ROWS = (
    ("nginx proxy_cache hit", "nginx", "/api/items/42"),
    ("turnout cache hit", "turnout", "/api/items/42"),
    ("turnout cache miss (no-store)", "turnout", "/nostore/items/42"),
    ("turnout no cache (plain route)", "turnout", "/plain/items/42"),
)


def measure(
    proc: harness.Spawned, port: int, path: str, args: Any, logdir: Path, tag: str
) -> dict[str, float]:
    harness.REQUEST_PATH = path  # run_wrk requests this path
    status, _ = harness.http_get(port, path)
    assert status == 200, f"{tag}: warm-up got {status}"
    pids = proc.pids()
    before = harness.proc_cpu(pids)
    res = harness.run_wrk(port, args.connections, args.duration, logdir, tag)
    after = harness.proc_cpu(pids)
    ticks = sum(sum(after[p]) - sum(before.get(p, (0, 0))) for p in after)
    requests = res["requests"]
    return {
        "rps": res["rps"],
        "cpu_us": ticks / harness.CLK_TCK / max(requests, 1) * 1e6,
        "errors": res["error_total"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run = harness.RESULTS / f"cache-{stamp}"
    (run / "tmp").mkdir(parents=True)
    up_port, nginx_port, turnout_port, admin_port = (harness.free_port() for _ in range(4))
    body = harness.BODY
    (run / "upstream.conf").write_text(UPSTREAM_CONF.format(run=run, port=up_port, body=body))
    taskset_load = ["taskset", "-c", str(harness.LOAD_CPU)]
    taskset_proxy = ["taskset", "-c", str(harness.PROXY_CPU)]
    upstream = harness.Spawned(
        "upstream",
        [
            *taskset_load,
            harness.NGINX,
            "-c",
            str(run / "upstream.conf"),
            "-p",
            str(run),
            "-e",
            str(run / "upstream-error.log"),
        ],
        run,
    )
    results: dict[str, list[dict[str, float]]] = {}
    try:
        time.sleep(0.5)
        (run / "nginx.conf").write_text(
            NGINX_CACHE_CONF.format(run=run, port=nginx_port, upstream=f"127.0.0.1:{up_port}")
        )
        (run / "turnout").mkdir()
        (run / "turnout" / "gateway.yaml").write_text(
            TURNOUT_CONF.format(port=turnout_port, upstream=f"127.0.0.1:{up_port}")
        )
        starts = {
            "nginx": (
                nginx_port,
                [
                    *taskset_proxy,
                    harness.NGINX,
                    "-c",
                    str(run / "nginx.conf"),
                    "-p",
                    str(run),
                    "-e",
                    str(run / "nginx-error.log"),
                ],
            ),
            "turnout": (
                turnout_port,
                [
                    *taskset_proxy,
                    str(harness.VENV_BIN / "turnout"),
                    "serve",
                    "-f",
                    str(run / "turnout"),
                    "--workers",
                    "1",
                    "--admin-address",
                    f"127.0.0.1:{admin_port}",
                    "--access-log",
                    "off",
                    "--data-dir",
                    str(run / "turnout" / "data"),
                ],
            ),
        }
        for rep in range(args.reps):
            for name, (port, argv) in starts.items():
                proc = harness.Spawned(f"{name}-{rep}", argv, run)
                try:
                    harness.wait_ready(port, proc, timeout=120.0)
                    harness.pin_all_threads(proc.pids(), harness.PROXY_CPU)
                    for label, target, path in ROWS:
                        if target != name:
                            continue
                        got = measure(
                            proc, port, path, args, run, f"{label.replace(' ', '_')}-{rep}"
                        )
                        results.setdefault(label, []).append(got)
                        harness.log(
                            f"{label} rep {rep}: {got['rps']:.0f} rps, "
                            f"{got['cpu_us']:.1f} us CPU/req"
                        )
                finally:
                    proc.stop()
    finally:
        upstream.stop()
        harness.Spawned.stop_all()
    print(
        f"\nmachine shared with other work; wrk -t1 -c{args.connections} "
        f"-d{args.duration:g}s, median of {args.reps}"
    )
    print("| row | requests/s | CPU µs per request | errors |")
    print("|---|---:|---:|---:|")
    medians: dict[str, dict[str, float]] = {}
    for label, _, _ in ROWS:
        runs = results.get(label, [])
        if not runs:
            continue
        med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "cpu_us", "errors")}
        medians[label] = med
        print(f"| {label} | {med['rps']:.0f} | {med['cpu_us']:.1f} | {med['errors']:.0f} |")
    hit, ref = medians.get("turnout cache hit"), medians.get("nginx proxy_cache hit")
    if hit and ref:
        print(f"\nturnout/nginx cache-hit RPS: {hit['rps'] / ref['rps']:.2f}x")
    miss, plain = (
        medians.get("turnout cache miss (no-store)"),
        medians.get("turnout no cache (plain route)"),
    )
    if miss and plain:
        print(
            "cost of a miss over a plain proxied request: "
            f"{miss['cpu_us'] - plain['cpu_us']:+.1f} µs CPU"
        )
    print(f"raw output: {run.relative_to(harness.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
