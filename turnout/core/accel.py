"""Which modules are compiled with mypyc, and whether a compiled copy is out of date.

``setup.py`` compiles ``HOT_MODULES`` (the per-request code) into C extensions placed
beside their sources; Python then imports the extension instead of the ``.py`` file.
In a source checkout that makes an edited ``.py`` silently lose to its older compiled
copy, so ``stale()`` compares modification times and the supervisor and the test suite
report stale copies (rebuild with ``pip install -e .``).
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path
from typing import Final

# Modules whose code or objects are touched per request. Not here: the supervisor, the
# config model (pydantic) and modules mypyc cannot compile (classes deriving from
# builtin exceptions, hence upstream/errors.py).
HOT_MODULES: Final = (
    "turnout.core.ids",
    "turnout.observe.accesslog",
    "turnout.observe.stats",
    "turnout.observe.flowrecord",
    "turnout.observe.protowire",
    "turnout.observe.spanencode",
    "turnout.observe.tracecontext",
    "turnout.observe.tracing",
    "turnout.proxy.protocols.heads",
    "turnout.proxy.protocols.hosts",
    "turnout.proxy.protocols.http1",
    "turnout.proxy.protocols.http1_client",
    "turnout.proxy.protocols.http1_wire",
    "turnout.proxy.protocols.hpack_codec",
    "turnout.proxy.protocols.http2_fields",
    "turnout.proxy.routing.table",
    "turnout.proxy.routing.keys",
    "turnout.proxy.filters.base",
    "turnout.proxy.filters.fault",
    "turnout.proxy.filters.headers",
    "turnout.proxy.filters.mirror",
    "turnout.proxy.filters.mitigation",
    "turnout.proxy.filters.redirect",
    "turnout.proxy.filters.rewrite",
    "turnout.proxy.filters.ratelimit",
    "turnout.proxy.filters.security",
    "turnout.proxy.upstream.affinity",
    "turnout.proxy.upstream.balancer",
    "turnout.proxy.upstream.breaker",
    "turnout.proxy.upstream.hashing",
    "turnout.proxy.upstream.health",
    "turnout.proxy.upstream.endpoints",
    "turnout.proxy.upstream.connection",
    "turnout.proxy.upstream.pool",
    "turnout.proxy.upstream.retry",
    "turnout.proxy.snapshot.tables",
    "turnout.proxy.snapshot.limits",
    "turnout.proxy.snapshot.state",
    "turnout.proxy.snapshot.builder",
    "turnout.proxy.runtime",
    "turnout.proxy.accounting",
    "turnout.proxy.spans",
    "turnout.proxy.attempts",
    "turnout.proxy.replies",
    "turnout.proxy.forward",
    "turnout.proxy.streams",
    "turnout.proxy.exchange_core",
    "turnout.proxy.transports.http1",
)

_PACKAGE_ROOT: Final = Path(__file__).resolve().parent.parent.parent


def source_path(module: str) -> Path:
    return _PACKAGE_ROOT.joinpath(*module.split(".")).with_suffix(".py")


def compiled_path(module: str) -> Path | None:
    source = source_path(module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def compiled() -> list[str]:
    """Hot modules that have a compiled copy beside their source."""
    return [m for m in HOT_MODULES if compiled_path(m) is not None]


def stale() -> list[str]:
    """Hot modules whose source changed after their compiled copy was built."""
    out = []
    for module in HOT_MODULES:
        binary = compiled_path(module)
        source = source_path(module)
        if binary is None or not source.exists():
            continue
        if source.stat().st_mtime > binary.stat().st_mtime:
            out.append(module)
    return out


def describe() -> str:
    done = compiled()
    if not done:
        return "pure Python (no compiled data plane found)"
    if len(done) < len(HOT_MODULES):
        return f"partly compiled ({len(done)} of {len(HOT_MODULES)} hot modules)"
    return "compiled with mypyc"
