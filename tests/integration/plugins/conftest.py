"""Install the example plugins and the test plugins into this venv, once per session.

A clean clone has none of them installed: each package is copied to a temporary
directory (so no build output lands in the checkout and no stale ``build/`` is reused)
and ``pip install --no-deps`` puts its entry points in place for the gateway processes
the tests start, exactly as a user would ship a plugin.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = (
    ROOT / "examples" / "request-signing",
    ROOT / "examples" / "header-enrichment",
    Path(__file__).resolve().parent / "testpkg",
)
NAMES = {"request-signing", "header-enrichment", "test-faulty", "test-lifecycle", "test-empty"}


@pytest.fixture(scope="session")
def plugin_packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    work = tmp_path_factory.mktemp("plugin-packages")
    copies = []
    for package in PACKAGES:
        copy = work / package.name
        shutil.copytree(package, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
        copies.append(str(copy))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *copies],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"installing the plugin packages failed:\n{done.stderr[-3000:]}")
    found = {ep.name for ep in entry_points(group="turnout.filters")}
    assert found >= NAMES, f"entry points missing after install: {NAMES - found}"
    yield
