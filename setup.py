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
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

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


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
