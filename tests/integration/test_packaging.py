"""The wheel and sdist as Python users get them: scripts/build-dist.sh end to end.

Builds both with ``python -m build`` (pure Python, ``TURNOUT_COMPILE=0``: a compiled
build takes minutes on 2 cores and CI builds the compiled package anyway), checks
SHA256SUMS, that both carry the console's browser libraries, then installs the wheel
into a fresh venv with nothing but that venv on PATH (no npm, no node) and runs the CLI
from outside the source tree.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from turnout.testing.manifests import backend, dump, gateway, route, to

ROOT = Path(__file__).resolve().parents[2]
VENDOR = "turnout/control/console/static/vendor"
ASSETS = ("htmx.min.js", "echarts.min.js", "htmx.LICENSE", "echarts.LICENSE")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _assets_available() -> bool:
    have_copies = all((ROOT / VENDOR / name).exists() for name in ASSETS)
    have_modules = (ROOT / "node_modules" / "htmx.org").is_dir()
    return have_copies or have_modules or shutil.which("npm") is not None


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("build") is None:
        pytest.skip("the `build` package is not installed (pip install -e '.[test]')")
    if not _assets_available():
        pytest.skip("npm is not installed: the console's libraries cannot be packaged")
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "TURNOUT_COMPILE": "0", "PYTHON": sys.executable}
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-dist.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_checksums_cover_exactly_the_wheel_and_sdist(dist: Path) -> None:
    lines = (dist / "SHA256SUMS").read_text().splitlines()
    sums = dict(reversed(line.split("  ", 1)) for line in lines)
    built = sorted(p.name for p in dist.iterdir() if p.name != "SHA256SUMS")
    assert sorted(sums) == built
    assert [n for n in built if n.endswith(".whl")] and [n for n in built if n.endswith(".tar.gz")]
    for name, digest in sums.items():
        assert hashlib.sha256((dist / name).read_bytes()).hexdigest() == digest, name
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_wheel_and_sdist_carry_the_console(dist: Path) -> None:
    (wheel,) = dist.glob("turnout-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ASSETS:
        assert f"{VENDOR}/{asset}" in names, asset
    assert any(n.startswith("turnout/control/console/templates/") for n in names)
    assert "turnout/samples/gateway.yaml" in names
    (sdist,) = dist.glob("turnout-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    for asset in ASSETS:
        assert f"{VENDOR}/{asset}" in members, asset
    assert "setup.py" in members and "package-lock.json" in members


def test_wheel_installs_and_runs_without_node(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("turnout-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    # Only the fresh venv on PATH: no npm, no node, no source tree on sys.path.
    env = {
        "PATH": str(bin_dir),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    assert shutil.which("npm", path=env["PATH"]) is None
    assert shutil.which("node", path=env["PATH"]) is None
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    def turnout(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / "turnout"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    from turnout import __version__

    version = turnout("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == __version__

    manifest = tmp_path / "gateway.yaml"
    manifest.write_text(
        dump(gateway("gw", 8080), backend("orders", 9000), route("r", [to("orders")]))
    )
    check = turnout("check", "-f", str(manifest))
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("OK:")

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: turnout.dev/v1alpha1\nkind: Backend\nmetadata: {name: x}\nspec: 7\n"
    )
    assert turnout("check", "-f", str(bad)).returncode == 1

    # The installed package (not the source tree) carries the console's libraries.
    where = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import pathlib, turnout.control.console as c; print(pathlib.Path(c.__file__).parent)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    console = Path(where.stdout.strip())
    assert console.is_relative_to(venv)
    for asset in ASSETS:
        assert (console / "static" / "vendor" / asset).stat().st_size > 0, asset
