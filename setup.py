"""Build script: compiles the data plane's per-request modules with mypyc.

The hot path (codecs, routing tables, the exchange, transports, pools, filters,
counters) is plain, fully typed Python; mypyc turns those modules into C extensions,
which makes a proxied request about twice as cheap in CPU (docs/benchmarks.md). The
same sources run uncompiled when there is no C compiler or ``TURNOUT_COMPILE=0`` is
set: every feature and test behaves the same, only slower. All metadata lives in
pyproject.toml; this file only adds the optional extensions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from turnout.core.accel import HOT_MODULES  # the one list of compiled modules


class OptionalBuildExt(build_ext):
    """Fall back to pure Python when the extensions cannot all be built.

    The compiled modules share one runtime library, so it is all or nothing: after any
    failure every extension already built is removed again.
    """

    def run(self) -> None:
        self._failed = False
        try:
            super().run()
        except Exception as exc:  # compiler missing, headers missing, ...
            self._failed = True
            _warn(f"compiling the hot path failed ({exc})")
        if self._failed:
            for ext in self.extensions:
                for path in (self.get_ext_fullpath(ext.name), self._inplace_path(ext.name)):
                    if path and os.path.exists(path):
                        os.remove(path)
            _warn("installing pure Python (slower, same behaviour)")

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._failed = True
            _warn(f"compiling {ext.name} failed ({exc})")

    def _inplace_path(self, name: str) -> str:
        build_py = self.get_finalized_command("build_py")
        package = ".".join(name.split(".")[:-1])
        filename = self.get_ext_filename(name).split(os.sep)[-1]
        return os.path.join(build_py.get_package_dir(package) or ".", filename)


def _warn(message: str) -> None:
    print(f"turnout: {message}", file=sys.stderr)


def _extensions() -> list[object]:
    if os.environ.get("TURNOUT_COMPILE", "1") == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not available; installing pure Python")
        return []
    paths = [m.replace(".", "/") + ".py" for m in HOT_MODULES]
    try:
        return list(mypycify(paths, opt_level="3", debug_level="0", group_name="turnout"))
    except (Exception, SystemExit) as exc:  # mypy reports type errors by exiting
        _warn(f"type-checking the hot path for mypyc failed ({exc}); installing pure Python")
        return []


# The web console's browser libraries: (file under node_modules, name in the package).
# They come from npm (package.json, package-lock.json) and are git-ignored; a wheel and
# an sdist carry the copies, so installing either needs no Node.js.
CONSOLE_VENDOR = "turnout/control/console/static/vendor"
CONSOLE_ASSETS = (
    ("htmx.org/dist/htmx.min.js", "htmx.min.js"),
    ("htmx.org/LICENSE", "htmx.LICENSE"),
    ("echarts/dist/echarts.min.js", "echarts.min.js"),
    ("echarts/LICENSE", "echarts.LICENSE"),
    ("echarts/NOTICE", "echarts.NOTICE"),
)


def build_console_assets(root: str) -> None:
    """Copy the console's libraries into the package, running ``npm ci`` if needed.

    Without npm (or offline) it warns and goes on: the console then answers 503 naming
    the fix, the rest of Turnout works.
    """
    vendor = os.path.join(root, CONSOLE_VENDOR)
    targets = [os.path.join(vendor, name) for _, name in CONSOLE_ASSETS]
    if all(os.path.exists(t) for t in targets):
        return
    modules = os.path.join(root, "node_modules")
    sources = [os.path.join(modules, src) for src, _ in CONSOLE_ASSETS]
    if not all(os.path.exists(s) for s in sources):
        npm = shutil.which("npm")
        if npm is None or not os.path.exists(os.path.join(root, "package-lock.json")):
            _warn("npm not found: the web console (/ui) will answer 503 until `npm ci` "
                  "and a reinstall copy its libraries (see docs/console.md)")
            return
        try:
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=root, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            _warn(f"`npm ci` failed ({exc}): the web console (/ui) will answer 503")
            return
    os.makedirs(vendor, exist_ok=True)
    for source, target in zip(sources, targets, strict=True):
        shutil.copyfile(source, target)


class BuildPyWithConsole(build_py):
    def run(self) -> None:
        build_console_assets(os.path.dirname(os.path.abspath(__file__)))
        super().run()


class SdistWithConsole(sdist):
    # An sdist carries the console's libraries too, so building a wheel from it (what
    # `python -m build` does) or installing it needs no Node.js.
    def run(self) -> None:
        build_console_assets(os.path.dirname(os.path.abspath(__file__)))
        super().run()


setup(
    ext_modules=_extensions(),
    cmdclass={
        "build_ext": OptionalBuildExt,
        "build_py": BuildPyWithConsole,
        "sdist": SdistWithConsole,
    },
)
