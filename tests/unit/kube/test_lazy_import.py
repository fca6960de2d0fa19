"""Non-cluster use stays free of the Kubernetes code: the workers, the supervisor and the
CLI import neither ``turnout.control.kube`` nor any Kubernetes client library."""

from __future__ import annotations

import subprocess
import sys


def test_plain_serve_and_workers_do_not_import_kubernetes_code() -> None:
    code = (
        "import sys\n"
        "import turnout.cli.main, turnout.cli.serve, turnout.supervisor.main\n"
        "import turnout.proxy.worker\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('turnout.control.kube', "
        "'turnout.supervisor.kube', 'kubernetes', 'kubernetes_asyncio')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
