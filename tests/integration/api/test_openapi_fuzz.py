"""Schemathesis against the admin API's OpenAPI document, with a valid admin token.

Every operation gets schema-generated and fuzzed requests (examples, coverage, fuzzing
and stateful phases); the run fails on any 5xx, any undocumented status code, any
response that does not match its schema, and any accepted request that the schema says
is invalid. Two checks are left out on purpose, each for a stated reason:

- ``positive_data_acceptance``: whether a manifest is valid depends on the kind's full
  schema and on the other objects (cross-object validation answers 422 with located
  problems), which the OpenAPI envelope of ``/apply`` cannot express;
- ``unsupported_method``: like Kubernetes, object paths (``/api/v1/{plural}``) share the
  URL space with fixed endpoints, so ``GET /api/v1/apply`` is "unknown resource type"
  (404), not 405.

``/api/v1/watch`` streams forever and is tested on its own in test_objects_api.py;
so does ``/api/v1/trace?follow=true`` (tested in tests/integration/sandbox/test_api.py)
and ``/api/v1/logs?follow=true`` (tests/e2e/test_observe_cli.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to


def test_schemathesis_finds_no_failures(serve: ServeFactory, port: int, tmp_path: Path) -> None:
    proc = serve(dump(gateway(port=port)))
    seed = {"manifests": [backend("shop", 1), route("r", [to("shop")])]}
    assert proc.api("POST", "/api/v1/apply", seed)[0] == 200
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is part of the test extra"
    result = subprocess.run(
        [
            st,
            "run",
            f"{proc.admin}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {proc.token}",
            "--max-examples",
            "25",
            "--seed",
            "20261122",
            "--exclude-path",
            "/api/v1/watch",
            "--exclude-path",
            "/api/v1/trace",
            "--exclude-path",
            "/api/v1/logs",
            "--exclude-checks",
            "positive_data_acceptance,unsupported_method",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # schemathesis writes its example database here
        check=False,
    )
    report = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "Server error" not in report
    # The server stayed healthy and logged no unexpected exception.
    assert proc.status()["ready"]
    assert "Traceback" not in proc.stderr(), proc.stderr()[-4000:]
