#!/usr/bin/env python3
"""HTTPS, HTTP/2 and gRPC: Turnout beside nginx, same upstream, same load tool, one run.

Rows (each proxy runs 1 worker pinned to CPU 1; the load tool and the upstream share
CPU 0, as in bench/run.py):

- **HTTPS (HTTP/1.1 over TLS)**: ``wrk`` over TLS, keep-alive, c64.
- **HTTP/2 over TLS**: ``h2load`` (ALPN h2), 16 connections × 10 streams.
- **h2c** (HTTP/2 with prior knowledge): ``h2load`` in clear text, same shape.
- **gRPC unary**: ``h2load`` posting a 5-byte gRPC message to a grpcio server through the
  proxy (Turnout: GRPCRoute to an ``appProtocol: grpc`` Backend; nginx: ``grpc_pass``).
  The Python upstream is the ceiling here, so the proxy's CPU per request is the figure
  to compare, not the RPS.

The upstream for the first three rows is nginx returning a fixed 100-byte body. Proxy
CPU per request is the utime+stime of the proxy's processes (Turnout: supervisor and
worker) over the requests completed. Results go to stdout as a markdown table.

    python bench/protocols.py [--duration 10] [--rows https,h2,h2c,grpc]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # the server's shutdown chatter
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from turnout.testing.certs import CertificateAuthority  # noqa: E402
from turnout.testing.manifests import dump  # noqa: E402
from turnout.testing.process import free_port  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "wrk"
H2LOAD = shutil.which("h2load") or "h2load"
VENV_BIN = Path(sys.executable).parent
PROXY_CPU, LOAD_CPU = "1", "0"
TICK = os.sysconf("SC_CLK_TCK")
BODY = "x" * 99

UPSTREAM = """
worker_processes 1; daemon off; pid {run}/up.pid; error_log {run}/up-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
    server {{ listen 127.0.0.1:{port} backlog=4096;
        default_type text/plain; location / {{ return 200 "{body}\\n"; }} }}
}}
"""

NGINX_PROXY = """
worker_processes 1; daemon off; pid {run}/px.pid; error_log {run}/px-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
    http2_max_concurrent_streams 128;
    upstream backend {{ server 127.0.0.1:{up}; keepalive 128; }}
    upstream grpcs {{ server 127.0.0.1:{grpc_up}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{tls} ssl http2 backlog=4096;
        listen 127.0.0.1:{h2c} http2 backlog=4096;
        ssl_certificate {cert}; ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                     proxy_set_header Connection ""; }}
        location /bench.Echo/ {{ grpc_pass grpc://grpcs; }}
    }}
}}
"""


def _cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            f = raw[raw.rindex(")") + 2 :].split()
            total += int(f[11]) + int(f[12])
    return total / TICK


def _children(pid: int) -> list[int]:
    out = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            f = raw[raw.rindex(")") + 2 :].split()
            if int(f[1]) == pid:
                out.append(int(entry))
    return out


def _wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def _load(argv: list[str], duration: float) -> str:
    proc = subprocess.run(
        ["taskset", "-c", LOAD_CPU, *argv],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return proc.stdout


def wrk_https(port: int, duration: float) -> tuple[float, int]:
    out = _load([WRK, "-t1", "-c64", f"-d{duration:g}s", f"https://127.0.0.1:{port}/"], duration)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} errors")
    return rps, total


def h2load(url: str, duration: float, extra: list[str]) -> tuple[float, int]:
    out = _load(
        [H2LOAD, "-c16", "-m10", "-t1", f"-D{duration:g}", "--warm-up-time=1", *extra, url],
        duration,
    )
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out
    )
    if m is None or done is None:
        raise RuntimeError(f"cannot read h2load output: {out[-800:]}")
    if int(done.group(3)):
        raise RuntimeError(f"h2load: {done.group(3)} failed requests\n{out[-800:]}")
    return float(m.group(1)), int(done.group(2))


def grpc_server(port: int) -> Any:
    import grpc

    def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=None, response_serializer=None
            )
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.enable_http_proxy", 0)]
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def measure(
    name: str, pids: Callable[[], list[int]], run: Callable[[], tuple[float, int]]
) -> dict[str, Any]:
    before = _cpu(pids())
    rps, total = run()
    used = _cpu(pids()) - before
    return {"name": name, "rps": rps, "cpu_us": used / max(total, 1) * 1e6, "total": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rows", default="https,h2,h2c,grpc")
    args = ap.parse_args()
    rows = args.rows.split(",")
    run = Path(tempfile.mkdtemp(prefix="turnout-protocols-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ca = CertificateAuthority()
        leaf = ca.issue("bench.local", "127.0.0.1")
        cert, key = leaf.write(run)
        up, grpc_up = free_port(), free_port()
        (run / "up.conf").write_text(UPSTREAM.format(run=run, port=up, body=BODY))
        procs.append(
            subprocess.Popen(["taskset", "-c", LOAD_CPU, NGINX, "-c", str(run / "up.conf")])
        )
        server = grpc_server(grpc_up)
        ng_tls, ng_h2c = free_port(), free_port()
        (run / "px.conf").write_text(
            NGINX_PROXY.format(
                run=run, up=up, grpc_up=grpc_up, tls=ng_tls, h2c=ng_h2c, cert=cert, key=key
            )
        )
        nginx = subprocess.Popen(["taskset", "-c", PROXY_CPU, NGINX, "-c", str(run / "px.conf")])
        procs.append(nginx)
        tt_tls, tt_h2c = free_port(), free_port()
        conf = run / "turnout"
        conf.mkdir()
        gw = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw"},
            "spec": {
                "gatewayClassName": "turnout",
                "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                "listeners": [
                    {
                        "name": "tls",
                        "port": tt_tls,
                        "protocol": "HTTPS",
                        "tls": {"certificateRefs": [{"name": "bench-cert"}]},
                    },
                    {"name": "h2c", "port": tt_h2c, "protocol": "HTTP"},
                ],
            },
        }
        backend = {
            "apiVersion": "turnout.dev/v1alpha1",
            "kind": "Backend",
            "metadata": {"name": "up"},
            "spec": {"endpoints": [{"address": f"127.0.0.1:{up}"}]},
        }
        gbackend = {
            "apiVersion": "turnout.dev/v1alpha1",
            "kind": "Backend",
            "metadata": {"name": "grpc-up"},
            "spec": {"appProtocol": "grpc", "endpoints": [{"address": f"127.0.0.1:{grpc_up}"}]},
        }
        route = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "r"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "up"}]}]},
        }
        groute = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GRPCRoute",
            "metadata": {"name": "g"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {
                        "matches": [{"method": {"service": "bench.Echo"}}],
                        "backendRefs": [{"name": "grpc-up"}],
                    }
                ],
            },
        }
        (conf / "gw.yaml").write_text(
            dump(gw, leaf.secret("bench-cert"), backend, gbackend, route, groute)
        )
        log = open(run / "turnout.log", "wb")  # noqa: SIM115  # closed with the run dir
        turnout = subprocess.Popen(
            [
                "taskset",
                "-c",
                PROXY_CPU,
                str(VENV_BIN / "turnout"),
                "serve",
                "-f",
                str(conf),
                "--workers",
                "1",
                "--admin-address",
                f"127.0.0.1:{free_port()}",
                "--access-log",
                "off",
                "--data-dir",
                str(run / "data"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        procs.append(turnout)
        for port in (up, ng_tls, ng_h2c, tt_tls, tt_h2c):
            _wait_port(port)
        grpc_body = run / "grpc.bin"
        grpc_body.write_bytes(b"\x00\x00\x00\x00\x05hello")
        grpc_args = [
            "-d",
            str(grpc_body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ]
        results = []
        for row in rows:
            for proxy, pid_of, tls_port, h2c_port in (
                ("nginx", lambda: _children(nginx.pid), ng_tls, ng_h2c),
                ("Turnout", lambda: _children(turnout.pid), tt_tls, tt_h2c),
            ):
                d = args.duration
                if row == "https":
                    job = lambda p=tls_port, d=d: wrk_https(p, d)  # noqa: E731
                elif row == "h2":
                    job = lambda p=tls_port, d=d: h2load(f"https://127.0.0.1:{p}/", d, [])  # noqa: E731
                elif row == "h2c":
                    job = lambda p=h2c_port, d=d: h2load(f"http://127.0.0.1:{p}/", d, [])  # noqa: E731
                else:
                    job = lambda p=h2c_port, d=d: h2load(  # noqa: E731
                        f"http://127.0.0.1:{p}/bench.Echo/Echo", d, grpc_args
                    )
                _load([H2LOAD, "-n200", "-c1", f"http://127.0.0.1:{h2c_port}/"], 5)  # warm
                r = measure(proxy, pid_of, job)
                r["row"] = row
                results.append(r)
                print(
                    f"{row:6} {proxy:8} {r['rps']:10,.0f} rps {r['cpu_us']:7.1f} us/req", flush=True
                )
        server.stop(0)
        labels = {
            "https": "HTTPS (HTTP/1.1 over TLS), wrk c64",
            "h2": "HTTP/2 over TLS, h2load 16×10",
            "h2c": "h2c (prior knowledge), h2load 16×10",
            "grpc": "gRPC unary (h2c), h2load 16×10",
        }
        print(
            "\n| protocol | nginx RPS | Turnout RPS | RPS ratio "
            "| nginx CPU µs/req | Turnout CPU µs/req | CPU ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            n = next(r for r in results if r["row"] == row and r["name"] == "nginx")
            t = next(r for r in results if r["row"] == row and r["name"] == "Turnout")
            print(
                f"| {labels[row]} | {n['rps']:,.0f} | {t['rps']:,.0f} | {t['rps'] / n['rps']:.2f}× "
                f"| {n['cpu_us']:.1f} | {t['cpu_us']:.1f} | {t['cpu_us'] / n['cpu_us']:.2f}× |"
            )
    finally:
        for p in reversed(procs):
            with __import__("contextlib").suppress(Exception):
                p.send_signal(signal.SIGTERM if p is not procs[-1] else signal.SIGINT)
                p.wait(10)
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
