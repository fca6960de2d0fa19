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

# Modules on the per-request path. Not here: anything that runs once per reload or per
# connection setup (config, snapshot building, supervisor) and modules mypyc cannot
# compile (classes deriving from builtin exceptions, e.g. upstream/endpoints.py).
HOT_MODULES = [
    "turnout/core/ids.py",
    "turnout/observe/stats.py",
    "turnout/proxy/protocols/heads.py",
    "turnout/proxy/protocols/hosts.py",
    "turnout/proxy/protocols/http1.py",
    "turnout/proxy/protocols/http1_client.py",
    "turnout/proxy/protocols/http1_wire.py",
    "turnout/proxy/routing/table.py",
    "turnout/proxy/filters/headers.py",
    "turnout/proxy/filters/redirect.py",
    "turnout/proxy/filters/rewrite.py",
    "turnout/proxy/upstream/balancer.py",
    "turnout/proxy/upstream/connection.py",
    "turnout/proxy/upstream/pool.py",
    "turnout/proxy/streams.py",
    "turnout/proxy/transports/http1.py",
]


class OptionalBuildExt(build_ext):
    """Fall back to pure Python when the extensions cannot be built."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing, headers missing, ...
            _warn(f"compiling the hot path failed ({exc}); installing pure Python")

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            _warn(f"compiling {ext.name} failed ({exc}); that module stays pure Python")


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
    return list(mypycify(HOT_MODULES, opt_level="3", debug_level="0", group_name="turnout"))


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
