"""``ControlPlane``: the control plane of one ``turnout serve``, composed of one part per job.

- ``DesiredState`` (``desired``): stored + file objects, their validation, the API's view;
- ``Writes`` (``writes``): commits, adopting revisions, the reconcilers' host;
- ``WatchHub`` (``watch``): watch streams; ``StatusRenderer`` (``status``): object status;
- ``Tokens`` (``tokens``) and ``AuditLog`` (``audit``): who calls, what was refused;
- ``ReconcileManager`` (``reconcile``): the registered reconcilers, run on the leader.

Reads (list, get, watch) come from memory, so they keep working while the store is
unreachable. ``start`` loads the latest revision; ``start_background`` starts the revision
feed, the leader election, the token refresh and the reconcile manager. The attributes
and methods below keep the API's and the supervisor's view of it in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from turnout.config.configset import ConfigSet
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.control.audit import AuditLog
from turnout.control.auth import Principal
from turnout.control.desired import DesiredState, Entry, store_key
from turnout.control.reconcile.base import Reconciler, no_observations
from turnout.control.reconcile.manager import ReconcileManager
from turnout.control.reconcile.registry import default_reconcilers
from turnout.control.releases.observations import ReplicaObservations, release_labels
from turnout.control.releases.reconciler import ReleaseReconciler
from turnout.control.status import KEYED_KINDS, RuntimeStatus, StatusRenderer
from turnout.control.store.records import ObjectKey, StoredObject
from turnout.control.store.repository import Change, CommitResult, Store
from turnout.control.tokens import AuthError, Tokens, write_secret
from turnout.control.watch import Watcher, WatchEvent, WatchHub
from turnout.control.writes import OwnedByFile, Writes
from turnout.core.clock import SYSTEM_CLOCK, Clock
from turnout.core.tasks import spawn
from turnout.observe.history import RequestHistory
from turnout.observe.metrics import Aggregate

log = logging.getLogger("turnout.control")

__all__ = [
    "KEYED_KINDS",
    "AuthError",
    "ControlPlane",
    "Entry",
    "OwnedByFile",
    "WatchEvent",
    "Watcher",
    "store_key",
    "write_secret",
]


class ControlPlane:
    def __init__(
        self,
        store: Store,
        *,
        data_dir: Path | None,
        on_change: Callable[[str], Awaitable[bool]],
        runtime: RuntimeStatus,
        feed_poll_interval: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        reconcilers: list[Reconciler] | None = None,
        observe: Callable[[], Aggregate] | None = None,
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.runtime = runtime
        self.feed_poll_interval = feed_poll_interval
        self.hub = WatchHub()
        self.state = DesiredState(self.hub.publish)
        self.writes = Writes(store, self.state, on_change)
        self.renderer = StatusRenderer(self.state, runtime, clock)
        self.audit_log = AuditLog(store)
        self.tokens = Tokens(store, self.audit_log, clock)
        self.reconcile = ReconcileManager(
            default_reconcilers() if reconcilers is None else reconcilers,
            store,
            self.writes,
            clock,
            observe=observe or no_observations,
        )
        self.writes.on_adopted = self.reconcile.observe
        self.observations = ReplicaObservations(
            store,
            observe or no_observations,
            clock,
            lambda: release_labels(self.state.stored.values()),
        )
        for rec in self.reconcile.reconcilers.values():
            if isinstance(rec, ReleaseReconciler):
                rec.source = self.observations.read
        self._tasks: set[asyncio.Task[Any]] = set()
        self._syncing: asyncio.Task[None] | None = None
        self._sync_again = False
        self.feed: Any = None
        self.leader: Any = None
        self.tunnel_dir = ""  # where `turnout connect` sockets live (set by the supervisor)
        self.tunnels: dict[str, str] = {}  # socket path -> actor, while a connect is open
        self.history: RequestHistory | None = None  # keyed requests (set by the supervisor)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the latest revision and make sure an admin token exists. Raises
        ``StoreUnavailable`` when the store cannot be reached."""
        revision, objects = await self.store.load()
        self.state.set_stored(revision, objects)
        await self.tokens.bootstrap(self.data_dir)

    def start_background(self, leader: Any = None) -> None:
        """``leader``: an elector replacing the store's LeaderLock (a Kubernetes Lease)."""
        from turnout.control.store.feed import RevisionFeed
        from turnout.control.store.leader import LeaderLock

        self.feed = RevisionFeed(
            self.store, self.writes.on_feed_revision, poll_interval=self.feed_poll_interval
        )
        self.leader = leader or LeaderLock(self.store)
        for coro in (
            self.feed.run(),
            self.leader.run(self._on_leader_change),
            self.tokens.run(),
            self.reconcile.run(),
            self.observations.run(),
        ):
            spawn(coro, keep=self._tasks)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.tokens.close()
        self.hub.close()
        await self.store.close()

    def _on_leader_change(self, leader: bool) -> None:
        log.debug("control plane: %s", "elected leader" if leader else "no longer leader")
        self.reconcile.set_leader(leader)
        self._sync_conditions()

    @property
    def is_leader(self) -> bool:
        return bool(self.leader is not None and self.leader.is_leader)

    @property
    def store_connected(self) -> bool:
        return bool(self.feed is None or self.feed.connected)

    # -- desired state (DesiredState) ----------------------------------------------------

    @property
    def store_revision(self) -> int:
        return self.state.store_revision

    @property
    def stored(self) -> dict[ObjectKey, StoredObject]:
        return self.state.stored

    @property
    def files(self) -> dict[ObjectKey, Resource]:
        return self.state.files

    @files.setter
    def files(self, files: dict[ObjectKey, Resource]) -> None:
        self.state.files = files

    @property
    def view(self) -> dict[ObjectKey, Entry]:
        return self.state.view

    @property
    def view_revision(self) -> int:
        return self.state.view_revision

    @property
    def problems(self) -> dict[ObjectKey, list[Problem]]:
        return self.state.problems

    def set_files(self, resources: list[Resource]) -> None:
        self.state.set_files(resources)

    def desired(self) -> tuple[ConfigSet, list[Problem]]:
        result = self.state.desired()
        self._sync_conditions()
        return result

    def _sync_conditions(self) -> None:
        """On the leader, store the conditions this validation changed (one run at a time;
        a request during a run makes it run once more)."""
        if not self.reconcile.leading:
            return
        if self._syncing is not None and not self._syncing.done():
            self._sync_again = True
            return
        self._syncing = spawn(self._sync_loop(), keep=self._tasks)

    async def _sync_loop(self) -> None:
        while True:
            self._sync_again = False
            try:
                await self.writes.sync_conditions()
            except Exception as exc:  # the store is away: the next revision retries
                log.debug("cannot store conditions: %s", exc)
            if not self._sync_again:
                return

    def file_owner(self, key: ObjectKey) -> str | None:
        return self.state.file_owner(key)

    # -- writes (Writes), audit, tokens, watch, status -----------------------------------

    async def write(
        self,
        changes: list[Change],
        principal: Principal,
        *,
        message: str = "",
        dry_run: bool = False,
        action: str = "apply",
        remote: str = "",
        rollback_of: int | None = None,
    ) -> CommitResult:
        return await self.writes.write(
            changes,
            principal,
            message=message,
            dry_run=dry_run,
            action=action,
            remote=remote,
            rollback_of=rollback_of,
        )

    async def adopt(self, revision: int, objects: list[StoredObject], reason: str) -> None:
        await self.writes.adopt(revision, objects, reason)

    async def audit(
        self,
        principal: Principal | None,
        action: str,
        result: str,
        target: str = "",
        message: str = "",
        remote: str = "",
    ) -> None:
        await self.audit_log.audit(principal, action, result, target, message, remote)

    async def authenticate(self, header: str | None, remote: str, target: str) -> Principal:
        return await self.tokens.authenticate(header, remote, target)

    def forget_token(self, token_id: str) -> None:
        self.tokens.forget(token_id)

    @property
    def watchers(self) -> set[Watcher]:
        return self.hub.watchers

    def subscribe(self, principal: Principal, kind: str | None, namespace: str | None) -> Watcher:
        return self.hub.subscribe(principal, kind, namespace)

    def unsubscribe(self, w: Watcher) -> None:
        self.hub.unsubscribe(w)

    def render(self, entry: Entry) -> dict[str, Any]:
        return self.renderer.render(entry)
