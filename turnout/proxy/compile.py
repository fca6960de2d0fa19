"""The one compile entry point: a validated ``ConfigSet`` → the ``Snapshot`` a worker serves.

Every worker compiles each revision here (``Runtime.build``), and so does the
supervisor's trial build before it publishes a revision, through a scratch ``Runtime``
that is never started: the same builder and the same pool factory, so the trial also
builds the listeners' and Backends' TLS contexts and the HTTP/2 (h2c) pools, reading
certificate files as a worker would. A revision the trial accepts cannot then fail in
every worker (as it could when the trial skipped the TLS contexts). Building opens no
socket and starts no task: pools connect on first use, timers start with the runtime.

What the configuration's validation cannot see (OpenSSL refusing material that parses,
e.g. a key below its security level, or a listener's cipher string) fails here; such
errors are located on the object and field they come from (``CompileError``), like
validation problems.
"""

from __future__ import annotations

import ssl

from turnout.config.configset import ConfigSet
from turnout.config.model.backend import BackendObject
from turnout.config.model.gateway import TLS_CIPHERS_OPTION, GatewayObject
from turnout.config.problems import ConfigError, Problem, format_path
from turnout.config.tls import TLSMaterialError, UpstreamTLS, backend_tls
from turnout.core.netaddr import Address
from turnout.observe.stats import WorkerStats
from turnout.proxy.cache.zone import CacheStores
from turnout.proxy.filters.plugin_host import PluginHost
from turnout.proxy.routing.tls import CipherStringError
from turnout.proxy.snapshot import (
    BackendState,
    LimitStores,
    PoolFactory,
    Snapshot,
    SnapshotBuilder,
)
from turnout.proxy.upstream.pool import EndpointPool


class CompileError(ConfigError):
    """A revision that validates but cannot be compiled, located like a validation error."""


def compile_snapshot(
    config: ConfigSet,
    revision: int,
    stats: WorkerStats,
    pool_for: PoolFactory,
    state: BackendState | None = None,
    *,
    limits: LimitStores | None = None,
    tunnel_dir: str = "",
    plugins: PluginHost | None = None,
    caches: CacheStores | None = None,
) -> Snapshot:
    """Compile ``config`` as revision ``revision``. Raises ``CompileError`` (located) when
    TLS material is refused, other exceptions for compiler bugs."""
    try:
        return SnapshotBuilder(
            config,
            stats,
            _Locating(config, pool_for),
            state,
            limits=limits,
            tunnel_dir=tunnel_dir,
            plugins=plugins,
            caches=caches,
        ).build(revision)
    except CipherStringError as exc:
        raise CompileError([_locate_listener(config, exc)]) from exc


def _locate_listener(config: ConfigSet, exc: CipherStringError) -> Problem:
    """Where the cipher string of the listener ``exc`` names is written."""
    for res in config.resources:
        gw = res.obj
        if not isinstance(gw, GatewayObject) or exc.listener is None:
            continue
        if f"{gw.metadata.namespace}/{gw.metadata.name}" != exc.listener[0]:
            continue
        for i, lst in enumerate(gw.spec.listeners):
            if lst.name == exc.listener[1]:
                return res.problem(
                    ("spec", "listeners", i, "tls", "options", TLS_CIPHERS_OPTION), str(exc)
                )
    return Problem("compile", None, None, "", str(exc))


class _Locating:
    """Wraps the pool factory: the factory builds a Backend's client TLS context, and
    OpenSSL's error names no object, so it is located here (only on failure)."""

    __slots__ = ("_config", "_pool_for")

    def __init__(self, config: ConfigSet, pool_for: PoolFactory) -> None:
        self._config = config
        self._pool_for = pool_for

    def __call__(
        self,
        address: Address,
        max_idle: int,
        idle_timeout: float,
        tls: UpstreamTLS | None = None,
        http2: bool = False,
    ) -> EndpointPool:
        try:
            return self._pool_for(address, max_idle, idle_timeout, tls, http2)
        except (ssl.SSLError, ValueError) as exc:
            if tls is None:
                raise
            raise CompileError([self._locate(tls, exc)]) from exc

    def _locate(self, tls: UpstreamTLS, exc: Exception) -> Problem:
        message = f"cannot build the TLS context: {exc}"
        for res in self._config.resources:
            backend = res.obj
            if not isinstance(backend, BackendObject) or backend.spec.tls is None:
                continue
            ns = backend.metadata.namespace
            try:
                same = backend_tls(backend.spec.tls, ns, self._config.secrets()) == tls
            except TLSMaterialError:
                continue
            if not same:
                continue
            spec = backend.spec.tls
            path: tuple[str | int, ...] = ("spec", "tls")
            if tls.client is not None:
                field = (
                    "clientCertificateRef"
                    if spec.client_certificate_ref is not None
                    else "clientCertificateFile"
                )
                path += (field,)
            line, column = res.doc.locate(path) if res.doc is not None else (res.origin.line, None)
            return Problem(
                res.origin.source,
                line,
                column,
                format_path(path),
                message,
                obj=f"Backend {ns}/{backend.metadata.name}",
            )
        return Problem("compile", None, None, "", message)
