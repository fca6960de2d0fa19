#!/usr/bin/env python3
"""One Turnout worker without a supervisor, for native profilers (valgrind, perf, strace).

    python bench/standalone_worker.py CONFIG.yaml [ACCESS_LOG|off]

It builds the snapshot from one rendered gateway file (e.g. bench/run.py's
``<run>/turnout/gateway.yaml``), binds its listeners itself, serves through the same
``Worker`` a supervised worker runs, and prints ``ready PID`` once it accepts
connections. Nothing else runs in the process (no control channel, no stats ticker), so
a whole-process counter such as ``valgrind --tool=callgrind --instr-atstart=no`` toggled
with ``callgrind_control -i on/off PID`` counts the request path only. It imports only
APIs that older checkouts have too, so the same file measures an old commit (run it with
``PYTHONPATH`` set to that checkout).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import uvloop

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.core import accel
from turnout.observe.accesslog import open_access_log
from turnout.proxy.runtime import ProxySettings
from turnout.proxy.worker import Worker, settle_garbage_collector


async def serve(config_path: str, text: str, access_log: str) -> None:
    print(f"data plane: {accel.describe()}", flush=True)
    resources, _ = parse_text(text, config_path)
    config, problems = validate(resources)
    for problem in problems:
        print(problem, file=sys.stderr)
    worker = Worker(asyncio.get_running_loop(), ProxySettings(), open_access_log(access_log))
    snapshot = worker.rt.build(config, 1)
    sockets = {}
    for key, (ip, port) in snapshot.bindings.items():
        sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(4096)
        sock.setblocking(False)
        sockets[key] = sock
    await worker.apply(config, 1, sockets)
    settle_garbage_collector()
    print(f"ready {os.getpid()}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    text = Path(sys.argv[1]).read_text()
    uvloop.run(serve(sys.argv[1], text, sys.argv[2] if len(sys.argv) == 3 else "off"))


if __name__ == "__main__":
    main()
