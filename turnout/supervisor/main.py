"""The supervisor: one process that binds, spawns, watches, reloads, reports and drains.

Start-up: load and validate the configuration (located errors abort with exit code 2),
bind the admin listener and every Gateway listener, start the admin server and
``--workers`` worker processes, each given the revision and the listening sockets.

Running: pings every worker each second and kills one that has not answered for
``worker_timeout`` (its loop is stuck); restarts workers that exit, with backoff when
they crash at start-up; reloads on file change (``ConfigWatcher``, armed before the
first read so a change during start-up is not lost) or SIGHUP; aggregates the
workers' counters for ``/metrics``.

Reload: parse → validate → trial snapshot build → bind new listeners → new revision to
every worker. Any failure leaves the running revision in place and is logged with its
file, line and field; ``turnout_config_reloads_total{result="failure"}`` counts it.

Shutdown (SIGTERM/SIGINT): workers stop accepting, finish in-flight requests within
``--drain-timeout`` and exit; the supervisor exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from turnout.config.configset import ConfigSet
from turnout.config.problems import Problem
from turnout.config.sources import ConfigSource
from turnout.config.tls import certificate_files
from turnout.core import accel
from turnout.core.netaddr import AddressError, parse_address
from turnout.core.tasks import spawn
from turnout.observe.accesslog import DEFAULT_FIELDS
from turnout.observe.history import RequestHistory
from turnout.observe.logring import LogRing
from turnout.observe.metrics import Aggregate
from turnout.proxy.compile import CompileError
from turnout.proxy.explain import ExplainRequest, explain
from turnout.proxy.messages import (
    Applied,
    ApplyConfig,
    Drain,
    HealthVerdicts,
    InitWorker,
    StatsReport,
    ToSupervisor,
)
from turnout.proxy.ratelimit.redis_store import RedisStore
from turnout.proxy.runtime import ProxySettings, Runtime
from turnout.proxy.snapshot import LimitStores
from turnout.proxy.upstream.ejections import EjectionTable
from turnout.supervisor import reporting
from turnout.supervisor.admin import make_server
from turnout.supervisor.admin_tls import (
    AdminTLSError,
    admin_context,
    exposure_warning,
    watch_files,
)
from turnout.supervisor.admin_tls import AdminTLSOptions as AdminTLSOptions  # for cli.serve
from turnout.supervisor.health import HealthFanout
from turnout.supervisor.limits import (
    create_ejection_table,
    create_limit_table,
    remove_limit_table,
)
from turnout.supervisor.listeners import BindError, ListenerSet, bind_listener
from turnout.supervisor.logs import install_event_handler, remove_event_handler
from turnout.supervisor.tunnels import create_tunnel_dir, remove_tunnel_dir
from turnout.supervisor.watch import ConfigWatcher
from turnout.supervisor.workers import WorkerProcess

if TYPE_CHECKING:
    from turnout.control.service import ControlPlane

log = logging.getLogger("turnout.supervisor")
CERT_POLL_SECONDS = 2.0


@dataclass(slots=True)
class ServeOptions:
    workers: int = 1
    admin_address: str = "127.0.0.1:9901"
    settings: ProxySettings = field(default_factory=ProxySettings)
    access_log: str = "-"
    access_log_fields: tuple[str, ...] = DEFAULT_FIELDS
    worker_timeout: float = 10.0
    watch: bool = True
    data_dir: Path | None = None  # None: no store (tests of the bare data plane only)
    store: str = ""  # "" = SQLite in data_dir; or postgresql://...
    store_timeout: float = 2.0
    redis: str = ""  # redis:// URL for Global rate limits; "" = none
    secrets_key_file: str = ""  # "" = TURNOUT_SECRETS_KEY, else <data dir>/secrets.key
    admin_tls: AdminTLSOptions = field(default_factory=AdminTLSOptions)
    # Who leads the reconcilers instead of the store's lock (a Kubernetes Lease elector
    # in controller mode): anything with ``run(on_change)`` and ``is_leader``.
    leader: Any = None
    # Fills in derived fields of every revision, files and stored objects alike (the
    # endpoints of DNS SRV discovery); applied before the fingerprint and trial build.
    rewrite: Callable[[ConfigSet], ConfigSet] = lambda config: config


class StartupError(Exception):
    """Start-up failed in a way the user can fix (bad config, port in use)."""


def log_problems(problems: list[Problem]) -> None:
    for p in problems:
        (log.error if p.severity == "error" else log.warning)("%s", p)


def _fingerprint(config: ConfigSet) -> str:
    digest = hashlib.sha256()
    for res in config.resources:
        digest.update(res.obj.model_dump_json().encode())
    # Certificate files are part of what a revision serves: renewing one is a change.
    digest.update(repr(_file_stamps(certificate_paths(config))).encode())
    return digest.hexdigest()


def certificate_paths(config: ConfigSet) -> list[str]:
    """The PEM files TLS listeners name in ``tls.options``."""
    paths: list[str] = []
    for gw in config.gateways().values():
        for lst in gw.spec.listeners:
            if lst.tls is None:
                continue
            try:
                files = certificate_files(lst.tls)
            except ValueError:
                continue
            if files is not None:
                paths.extend(files)
    return sorted(set(paths))


def _file_stamps(paths: list[str]) -> list[tuple[str, int, int, int] | str]:
    stamps: list[tuple[str, int, int, int] | str] = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks: cert-manager and certbot swap them
        except OSError:
            stamps.append(path)
            continue
        stamps.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
    return stamps


class Supervisor:
    def __init__(self, source: ConfigSource, options: ServeOptions) -> None:
        self.source = source
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.listeners = ListenerSet()
        self.workers: dict[int, WorkerProcess] = {}
        self.config = ConfigSet()
        self.fingerprint = ""
        self.revision = 0
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_reload_error = ""
        self.worker_restarts = 0
        self.retired = Aggregate()
        self.stopping = False
        self.stopped: asyncio.Future[int] = self.loop.create_future()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._admin: Any = None
        self._admin_sock: socket.socket | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self.watcher: ConfigWatcher | None = None
        if options.watch and source.watch_paths():
            self.watcher = ConfigWatcher(source)
        self.control: ControlPlane | None = None
        self.health = HealthFanout(self._send_health)
        self.limits_path = ""  # the host-wide rate-limit table the workers share
        self.ejections_path = ""  # the host-wide outlier table the workers share
        self.ejections: EjectionTable | None = None  # read for status and metrics
        self.tunnel_dir = ""
        # Trial builds need a Redis client object to accept Global rate limits (it never
        # connects: the supervisor makes no decisions).
        self.trial_limits = LimitStores(None, RedisStore(options.redis) if options.redis else None)
        self.store_revision_of: dict[int, int] = {}  # data-plane revision -> store revision
        self.history = RequestHistory()  # keyed requests, from the workers' stats
        self.logs = LogRing()  # the workers' recent access-log lines, and events
        # worker pid -> (store revision, wall time) of each revision it applied, newest last
        self.applied: dict[int, deque[tuple[int, float]]] = {}
        self.certs: tuple[ConfigSet, list[tuple[str, str, str, float]]] | None = None

    # -- start ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.watcher is not None:
            self.watcher.arm()  # before the first read: no change after it can be missed
        config, problems = self.source.load()
        log_problems(problems)
        if any(p.severity == "error" for p in problems):
            raise StartupError(f"the configuration in {self.source.name} has errors")
        if self.options.data_dir is not None:
            self.control = await self._open_control()
            self.control.set_files(config.resources)
            config, more = self.control.desired()
            _log_new(more, problems)
            if any(p.severity == "error" for p in more):
                await self.control.close()
                raise StartupError(
                    f"the stored objects and {self.source.name} do not validate together"
                )
        try:
            self._trial_build(config := self.options.rewrite(config), 1)
        except CompileError as exc:
            log_problems(exc.problems)
            if self.control is not None:
                await self.control.close()
            raise StartupError(
                f"the configuration in {self.source.name} cannot be compiled"
            ) from None
        self.limits_path = create_limit_table(self.options.data_dir)
        self.ejections_path = create_ejection_table(self.options.data_dir)
        self.ejections = EjectionTable.open(self.ejections_path)
        self.options.settings.tunnel_dir = self.tunnel_dir = create_tunnel_dir()
        if self.control is not None:
            self.control.tunnel_dir = self.tunnel_dir
            self.control.history = self.history
        try:
            addr = parse_address(self.options.admin_address)
            admin_ssl = admin_context(self.options.admin_tls, config)
            warning = exposure_warning(
                addr.host, admin_ssl is not None, self.options.admin_tls.allow_insecure
            )
        except (AdminTLSError, AddressError) as exc:
            if self.control is not None:
                await self.control.close()
            raise StartupError(str(exc)) from None
        if warning:
            log.warning("%s", warning)
        try:
            self._admin_sock = bind_listener(addr.host, addr.port)
        except OSError as exc:
            raise StartupError(f"cannot listen on admin address {addr}: {exc.strerror}") from None
        try:
            self.listeners.bind_missing(self._bindings(config))
        except BindError as exc:
            self._admin_sock.close()
            raise StartupError(str(exc)) from None
        self.config, self.revision, self.fingerprint = config, 1, _fingerprint(config)
        self._note_store_revision()
        self.health.configure(config)
        self._admin = make_server(self, self._admin_sock, self.control, admin_ssl)
        if self.control is not None:
            self.control.start_background(self.options.leader)
        self._spawn(self._admin.serve(sockets=[self._admin_sock]))
        for index in range(self.options.workers):
            self._spawn(self._keep_worker(index))
        self._heartbeat = self.loop.call_later(1.0, self._beat)
        if self.watcher is not None:
            self._spawn(self.watcher.run(self._reload_files))
        self._spawn(self._watch_certificates())
        if admin_ssl is not None:
            self._spawn(
                watch_files(
                    admin_ssl, self.options.admin_tls, lambda: self.stopping, CERT_POLL_SECONDS
                )
            )
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_shutdown)
        self.loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        self.loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        log.info("data plane: %s", accel.describe())
        for module in accel.stale():
            log.warning(
                "%s is older than its source and shadows it; rebuild with `pip install -e .`",
                accel.compiled_path(module),
            )
        log.info(
            "serving revision %d on %s; admin on %s://%s",
            self.revision,
            ", ".join(sorted(self.listeners.sockets)) or "no listeners",
            "https" if admin_ssl is not None else "http",
            addr,
        )

    async def _open_control(self) -> ControlPlane:
        from turnout.control.service import ControlPlane
        from turnout.control.store.engine import open_store, store_url
        from turnout.control.store.errors import StoreUnavailable
        from turnout.control.store.sealing import KEY_ENV, SecretsKeyError, load_keyring

        data_dir = self.options.data_dir
        assert data_dir is not None
        # Alembic reports every step at INFO; only its problems belong in our log.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        try:
            url = store_url(self.options.store or None, data_dir)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        try:
            keyring = load_keyring(self.options.secrets_key_file, os.environ.get(KEY_ENV), data_dir)
            store = await open_store(url, timeout=self.options.store_timeout, keyring=keyring)
        except (StoreUnavailable, SecretsKeyError) as exc:
            raise StartupError(str(exc)) from None
        control = ControlPlane(
            store,
            data_dir=data_dir,
            on_change=self._on_store_change,
            runtime=self.runtime,
            observe=self.aggregate,
        )
        try:
            await control.start()
        except StoreUnavailable as exc:
            await store.close()
            raise StartupError(str(exc)) from None
        log.info(
            "store: %s (revision %d); Secrets encrypted at rest with key id %s from %s",
            store.url,
            control.store_revision,
            keyring.primary,
            keyring.source,
        )
        return control

    def _note_store_revision(self) -> None:
        if self.control is not None:
            self.store_revision_of[self.revision] = self.control.store_revision
            for old in [r for r in self.store_revision_of if r < self.revision - 64]:
                del self.store_revision_of[old]

    async def _on_store_change(self, reason: str) -> bool:
        return await self.reload(reason, files=False)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        spawn(coro, loop=self.loop, keep=self._tasks)

    @staticmethod
    def _bindings(config: ConfigSet) -> dict[str, tuple[str, int]]:
        from turnout.proxy.snapshot import gateway_bindings, socket_key

        out: dict[str, tuple[str, int]] = {}
        for gw in config.gateways().values():
            for ip, port, _ in gateway_bindings(gw):
                out[socket_key(ip, port)] = (ip, port)
        return out

    def _trial_build(self, config: ConfigSet, revision: int) -> None:
        """Compile the revision once here, exactly as a worker will (a scratch runtime,
        never started: no sockets, no tasks), so a configuration that cannot be built
        never reaches the workers. Raises ``CompileError`` (located) or a compiler bug."""
        runtime = Runtime(self.loop, self.options.settings)
        # A Redis client object lets Global rate limits compile; it never connects.
        runtime.limits = self.trial_limits
        runtime.build(config, revision)

    # -- workers ----------------------------------------------------------------------------

    def _init_message(self, index: int) -> InitWorker:
        o = self.options
        return InitWorker(
            o.settings,
            o.access_log,
            o.access_log_fields,
            index,
            self.limits_path,
            o.redis,
            self.ejections_path,
        )

    def _config_message(self, keys: list[str]) -> ApplyConfig:
        return ApplyConfig(self.revision, self.config.without_documents(), tuple(keys))

    async def _keep_worker(self, index: int) -> None:
        backoff = 0.5
        while not self._stopping():
            worker = WorkerProcess(index, self._on_worker_message)
            self.workers[index] = worker
            started = self.loop.time()
            await worker.start(self._init_message(index))
            keys = sorted(self.listeners.sockets)
            worker.send(
                self._config_message(keys), [self.listeners.sockets[k].fileno() for k in keys]
            )
            if self.health.verdicts:
                worker.send(HealthVerdicts(dict(self.health.verdicts)))
            code = await worker.wait()
            self.retired.add_worker(worker.stats, include_gauges=False)
            worker.stats = {}
            if self._stopping():
                break
            self.worker_restarts += 1
            log.warning(
                "worker %d (pid %d) exited with code %s; starting a new one",
                index,
                worker.pid,
                code,
            )
            if self.loop.time() - started < 5.0:
                await asyncio.sleep(backoff)  # crash loop protection, not polling
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.5
        self.workers.pop(index, None)
        if self.stopping and not self.workers and not self.stopped.done():
            self.stopped.set_result(0)

    def _send_health(self, verdicts: dict[str, bool]) -> None:
        for worker in self.workers.values():
            if worker.channel is not None:
                worker.send(HealthVerdicts(verdicts))

    def _stopping(self) -> bool:
        return self.stopping

    def _on_worker_message(self, worker: WorkerProcess, message: ToSupervisor) -> None:
        match message:
            case StatsReport(stats):
                records = stats.get("history")
                if records:
                    self.history.add(records)
                lines = stats.pop("log", None)
                if lines:
                    self.logs.add_lines(lines, worker.pid)
                flows = stats.get("flows")
                if flows:
                    self.history.add_flows(flows)
            case Applied(revision, error) if error is not None:
                log.error("worker %d failed to apply revision %d: %s", worker.pid, revision, error)
            case Applied(revision, None):
                log_ = self.applied.setdefault(worker.pid, deque(maxlen=256))
                log_.append((self.store_revision_of.get(revision, 0), time.time()))
                if len(self.applied) > 4 * max(self.options.workers, 1):
                    live = {w.pid for w in self.workers.values()}
                    for pid in [p for p in self.applied if p not in live]:
                        del self.applied[pid]
            case _:
                pass  # readiness, pongs and drains are the WorkerProcess's business

    def _beat(self) -> None:
        now = self.loop.time()
        for worker in list(self.workers.values()):
            if worker.proc is None or worker.proc.returncode is not None:
                continue
            if now - worker.last_pong > self.options.worker_timeout and not self.stopping:
                log.error(
                    "worker %d (pid %d) has not answered for %.0fs; killing it",
                    worker.index,
                    worker.pid,
                    now - worker.last_pong,
                )
                worker.kill()
                continue
            worker.ping()
        self._heartbeat = self.loop.call_later(1.0, self._beat)

    # -- reload ---------------------------------------------------------------------------

    def reopen_logs(self) -> None:
        """SIGUSR1: every worker reopens its access log file (logrotate ``postrotate``)."""
        for worker in self.workers.values():
            # only ready workers: before its handler is installed SIGUSR1 would kill one
            if worker.ready and worker.proc is not None and worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.proc.pid, signal.SIGUSR1)

    def request_reload(self) -> None:
        if not self.stopping:
            self._spawn(self.reload("SIGHUP"))

    async def reload(self, reason: str, files: bool = True) -> bool:
        async with self._reload_lock:
            if self.stopping:
                return False
            problems: list[Problem] = []
            if files or self.control is None:
                config, problems = self.source.load()
                log_problems(problems)
                errors = [p for p in problems if p.severity == "error"]
                if errors:
                    return self._reload_failed(f"{len(errors)} error(s) in the configuration")
            if self.control is not None:
                old_files = self.control.files
                if files:
                    self.control.set_files(config.resources)
                config, more = self.control.desired()
                _log_new(more, problems)
                errors = [p for p in more if p.severity == "error"]
                if errors:
                    self.control.files = old_files
                    self.control.desired()
                    return self._reload_failed(
                        f"{len(errors)} error(s) validating files and stored objects together"
                    )
            fingerprint = _fingerprint(config := self.options.rewrite(config))
            if fingerprint == self.fingerprint:
                log.info("reload (%s): configuration unchanged", reason)
                return True
            try:
                self._trial_build(config, self.revision + 1)
            except CompileError as exc:
                log_problems(exc.problems)
                return self._reload_failed(f"compile error: {exc}")
            except Exception as exc:  # a compile bug must not take the gateway down
                log.exception("cannot compile the new configuration")
                return self._reload_failed(f"compile error: {exc}")
            bindings = self._bindings(config)
            try:
                new = self.listeners.bind_missing(bindings)
            except BindError as exc:
                return self._reload_failed(str(exc))
            self.config, self.fingerprint = config, fingerprint
            self.revision += 1
            self._note_store_revision()
            self.health.configure(config)
            keys = sorted(new)
            fds = [new[k].fileno() for k in keys]
            for worker in self.workers.values():
                worker.send(self._config_message(keys), fds)
            self.listeners.close_unused(set(bindings))
            self.reloads_ok += 1
            self.last_reload_error = ""
            log.info("reload (%s): serving revision %d", reason, self.revision)
            return True

    def _reload_failed(self, message: str) -> bool:
        self.reloads_failed += 1
        self.last_reload_error = message
        log.error("reload rejected (%s); still serving revision %d", message, self.revision)
        return False

    async def _watch_certificates(self) -> None:
        """Reload when a certificate file named by a TLS listener changes. Polled (a few
        ``stat`` calls every 2 s) rather than watched: renewals often replace symlinks
        or directories, which file watches on the old inode miss."""
        seen = _file_stamps(certificate_paths(self.config))
        while not self.stopping:
            await asyncio.sleep(CERT_POLL_SECONDS)
            now = _file_stamps(certificate_paths(self.config))
            if now != seen:
                seen = now
                await self.reload("certificate file change")

    async def _reload_files(self) -> None:
        await self.reload("file change")

    # -- shutdown -------------------------------------------------------------------------

    def request_shutdown(self) -> None:
        if not self.stopping:
            self._spawn(self.shutdown())

    async def shutdown(self) -> None:
        self.stopping = True
        grace = self.options.settings.drain_timeout
        log.info("draining (up to %.0fs for in-flight requests)", grace)
        if self.watcher is not None:
            self.watcher.stop()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        # Our copies of the listening sockets go now; workers close theirs as they drain.
        self.listeners.close_all()
        for worker in self.workers.values():
            worker.send(Drain(grace))
        waits = [w.proc.wait() for w in self.workers.values() if w.proc is not None]
        if waits:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=grace + 5.0
            )
            if pending:
                for worker in self.workers.values():
                    worker.kill()
        if self._admin is not None:
            self._admin.should_exit = True
        await self.health.close()
        remove_limit_table(self.limits_path)
        remove_limit_table(self.ejections_path)
        remove_tunnel_dir(self.tunnel_dir)
        if self.control is not None:
            await self.control.close()
        if not self.stopped.done():
            self.stopped.set_result(0)

    async def run(self, on_started: Callable[[], None] | None = None) -> int:
        """Start, serve until shut down, return the exit code. Raises ``StartupError``."""
        events = install_event_handler(self.logs)
        try:
            try:
                await self.start()
            except BaseException:
                if self.watcher is not None:
                    self.watcher.stop()
                raise
            if on_started is not None:
                on_started()
            code = await self.stopped
            # Let the admin server and worker tasks wind down.
            await asyncio.sleep(0.1)
            for task in list(self._tasks):
                task.cancel()
            log.info("stopped")
            return code
        finally:
            remove_event_handler(events)

    # -- reporting (admin) ----------------------------------------------------------------

    def aggregate(self) -> Aggregate:
        return reporting.aggregate(self)

    def explain(self, request: ExplainRequest) -> Callable[[], dict[str, Any]]:
        """How the revision being served routes ``request`` (``proxy.explain``): the state
        is read here, on the loop; the returned call compiles, and may run in a thread."""
        config, revision, health = self.config, self.revision, self.health.snapshot()
        settings, limits = self.options.settings, self.trial_limits
        return lambda: explain(
            config, revision, request, settings=settings, limits=limits, health=health
        )

    def runtime(self) -> dict[str, Any]:
        """What the data plane runs, for the control plane's object status."""
        return reporting.runtime(self)

    def status(self) -> dict[str, Any]:
        return reporting.status(self)


def _log_new(problems: list[Problem], already: list[Problem]) -> None:
    """Log the problems of the combined validation that the file-only one did not show."""
    seen = {str(p) for p in already}
    log_problems([p for p in problems if str(p) not in seen])
