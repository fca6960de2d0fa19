"""The control plane of one ``turnout serve``: desired state, writes, tokens, watch events.

``ControlPlane`` keeps in memory what this replica serves: the objects of the latest
store revision it has adopted and the objects from ``serve -f`` files. Reads (list, get,
watch) come from memory, so they keep working while the store is unreachable; writes go
through ``Store.commit``, which validates the *combined* desired state (files + stored,
exactly what the data plane would compile) inside the store's transaction, so a write
that fails validation changes nothing, and two replicas cannot interleave revisions.

A revision reaches the data plane by one path whatever its origin: ``_adopt`` (after a
local commit, or when the ``RevisionFeed`` reports a newer revision written by another
replica) swaps the stored objects, asks the supervisor to reload (``on_change``), and
emits watch events for every object whose manifest changed.

Objects from files belong to their files: a write naming one is refused (409) with the
file and line, and a stored object with the same key as a file object is shadowed by it
(reported once as a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from turnout.config.configset import ConfigSet
from turnout.config.kinds import ROUTING_KEY_KINDS
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.config.sandboxes import derived_key, new_routing_key
from turnout.config.validate import validate
from turnout.control.auth import (
    Principal,
    Role,
    is_expired,
    new_token,
    secret_matches,
    split_token,
)
from turnout.control.objects import (
    API_SOURCE,
    CLUSTER_NAMESPACE,
    KIND_INFO,
    OWNER_ANNOTATION,
    describe_key,
    normalise,
    to_resource,
)
from turnout.control.store.errors import Conflict, StoreUnavailable
from turnout.control.store.repository import (
    Change,
    CommitResult,
    Store,
    StoredObject,
    TokenRecord,
    redacted,
    rfc3339,
)
from turnout.core.durations import DurationError, parse_duration
from turnout.core.netaddr import AddressError, parse_address
from turnout.core.paths import ADMIN_TOKEN_FILE
from turnout.observe.history import RequestHistory

log = logging.getLogger("turnout.control")

ObjectKey = tuple[str, str, str]
BOOTSTRAP_TOKEN_NAME: Final = "bootstrap-admin"
TOKEN_CACHE_SECONDS: Final = 5.0
WATCH_QUEUE: Final = 1024


class OwnedByFile(Exception):
    """A write named an object that a ``serve -f`` file defines."""


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def store_key(res: Resource) -> ObjectKey:
    ns = res.obj.metadata.namespace if KIND_INFO[res.kind].namespaced else CLUSTER_NAMESPACE
    return (res.kind, ns, res.obj.metadata.name)


@dataclass(slots=True)
class Entry:
    """One object as this replica serves it."""

    key: ObjectKey
    manifest: dict[str, Any]  # with metadata (owner annotation, resourceVersion...), no status
    owner: str  # "api" or "file:PATH:LINE"
    resource_version: int  # 0 for file objects
    generation: int
    labels: dict[str, str]


@dataclass(slots=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    key: ObjectKey
    manifest: dict[str, Any]
    revision: int


@dataclass(slots=True, eq=False)
class Watcher:
    kind: str | None
    namespace: str | None
    principal: Principal
    queue: asyncio.Queue[WatchEvent | None] = field(
        default_factory=lambda: asyncio.Queue(WATCH_QUEUE)
    )
    overflowed: bool = False

    def wants(self, key: ObjectKey) -> bool:
        kind, ns, _ = key
        if self.kind is not None and kind != self.kind:
            return False
        if self.namespace is not None and ns not in (self.namespace, CLUSTER_NAMESPACE):
            return False
        return self.principal.sees_namespace(ns)


RuntimeStatus = Callable[[], dict[str, Any]]
KEYED_KINDS: Final = ROUTING_KEY_KINDS
SANDBOX_SWEEP_SECONDS: Final = 1.0


def expiry(obj: StoredObject) -> datetime | None:
    """When a stored Sandbox's ``ttl`` runs out, counted from its creation."""
    spec = obj.spec if isinstance(obj.spec, dict) else {}
    ttl = spec.get("ttl")
    if not isinstance(ttl, str):
        return None
    try:
        return obj.created_at + timedelta(seconds=parse_duration(ttl))
    except DurationError:
        return None


class ControlPlane:
    def __init__(
        self,
        store: Store,
        *,
        data_dir: Path | None,
        on_change: Callable[[str], Awaitable[bool]],
        runtime: RuntimeStatus,
        feed_poll_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.on_change = on_change
        self.runtime = runtime
        self.feed_poll_interval = feed_poll_interval
        self.store_revision = 0
        self.stored: dict[ObjectKey, StoredObject] = {}
        self.files: dict[ObjectKey, Resource] = {}
        self.view: dict[ObjectKey, Entry] = {}
        self.problems: dict[ObjectKey, list[Problem]] = {}
        self.watchers: set[Watcher] = set()
        self.view_revision = 0  # bumps on every view change; watch bookmarks carry it
        self._adopt_lock = asyncio.Lock()
        self._tokens: dict[str, tuple[TokenRecord, float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shadowed_reported: set[ObjectKey] = set()
        self.feed: Any = None
        self.leader: Any = None
        # (object, condition type) -> (status, when it last changed), for lastTransitionTime
        self._transitions: dict[tuple[ObjectKey, str], tuple[str, str]] = {}
        self.tunnel_dir = ""  # where `turnout connect` sockets live (set by the supervisor)
        self.tunnels: dict[str, str] = {}  # socket path -> actor, while a connect is open
        self.history: RequestHistory | None = None  # keyed requests (set by the supervisor)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the latest revision and make sure an admin token exists. Raises
        ``StoreUnavailable`` when the store cannot be reached."""
        revision, objects = await self.store.load()
        self._set_stored(revision, objects)
        await self._bootstrap_token()

    def start_background(self) -> None:
        from turnout.control.store.feed import RevisionFeed
        from turnout.control.store.leader import LeaderLock

        self.feed = RevisionFeed(
            self.store, self._on_feed_revision, poll_interval=self.feed_poll_interval
        )
        self.leader = LeaderLock(self.store)
        self._spawn(self.feed.run())
        self._spawn(self.leader.run(self._on_leader_change))
        self._spawn(self._refresh_tokens())
        self._spawn(self._expire_sandboxes())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for w in list(self.watchers):
            w.queue.put_nowait(None)
        await self.store.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_leader_change(self, leader: bool) -> None:
        log.debug("control plane: %s", "elected leader" if leader else "no longer leader")

    @property
    def is_leader(self) -> bool:
        return bool(self.leader is not None and self.leader.is_leader)

    @property
    def store_connected(self) -> bool:
        return bool(self.feed is None or self.feed.connected)

    # -- desired state -------------------------------------------------------------------

    def set_files(self, resources: list[Resource]) -> None:
        """Objects from ``serve -f`` files (or the embedded defaults); called on every load."""
        self.files = {store_key(r): r for r in resources}

    def desired(self) -> tuple[ConfigSet, list[Problem]]:
        """Files + stored objects, validated together: what the data plane compiles."""
        config, problems = validate(self._combined(self.stored.values()))
        by_key: dict[ObjectKey, list[Problem]] = {}
        index = {r.ref: store_key(r) for r in config.resources}
        for p in problems:
            key = index.get(p.obj)
            if key is not None:
                by_key.setdefault(key, []).append(p)
        self.problems = by_key
        self._refresh_view()
        return config, problems

    def _combined(self, stored: Any) -> list[Resource]:
        resources = list(self.files.values())
        base = len(resources)
        for i, obj in enumerate(sorted(stored, key=lambda o: o.key)):
            if obj.key in self.files:
                if obj.key not in self._shadowed_reported:
                    self._shadowed_reported.add(obj.key)
                    res = self.files[obj.key]
                    log.warning(
                        "%s from the store is shadowed by the same object in %s:%s",
                        describe_key(*obj.key),
                        res.origin.source,
                        res.origin.line,
                    )
                continue
            resources.append(to_resource(obj.manifest(), base + i))
        return resources

    def _validation_errors(self, objects: list[StoredObject]) -> list[Any]:
        _, problems = validate(self._combined(objects))
        errors = []
        for p in problems:
            if p.severity != "error":
                continue
            if p.source == API_SOURCE and p.line == 0:
                p = Problem(p.source, None, None, p.path, p.message, p.obj, p.severity)
            errors.append(p)
        return errors

    def file_owner(self, key: ObjectKey) -> str | None:
        res = self.files.get(key)
        return None if res is None else f"file:{res.origin.source}:{res.origin.line}"

    # -- writes --------------------------------------------------------------------------

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
        changes = [self._with_routing_key(ch) for ch in changes]
        for ch in changes:
            key = (ch.kind, ch.namespace, ch.name)
            owner = self.file_owner(key)
            if owner is not None:
                where = owner.removeprefix("file:")
                raise OwnedByFile(
                    f"{describe_key(*key)} is managed by file {where}; change the file instead"
                )
        result = await self.store.commit(
            changes,
            actor=principal.actor,
            message=message,
            validate=self._validation_errors,
            dry_run=dry_run,
            action=action,
            remote=remote,
            rollback_of=rollback_of,
        )
        if result.changed and not dry_run:
            await self.adopt(result.revision, result.objects, f"{action} by {principal.actor}")
        return result

    def _with_routing_key(self, change: Change) -> Change:
        """A Sandbox or RouteGroup written without ``spec.routingKey`` keeps the key it
        has, or gets a new random one (written into the spec, so every replica and every
        later revision agrees on it)."""
        manifest = change.manifest
        if change.op != "put" or change.kind not in KEYED_KINDS or manifest is None:
            return change
        spec = manifest.get("spec")
        if not isinstance(spec, dict) or spec.get("routingKey"):
            return change
        known = self.stored.get(change.key)
        old = (
            known.spec.get("routingKey")
            if known is not None and isinstance(known.spec, dict)
            else None
        )
        key = old if isinstance(old, str) and old else new_routing_key()
        return replace(change, manifest={**manifest, "spec": {**spec, "routingKey": key}})

    async def audit(
        self,
        principal: Principal | None,
        action: str,
        result: str,
        target: str = "",
        message: str = "",
        remote: str = "",
    ) -> None:
        """Record a failed operation (successful writes are audited by the store)."""
        actor = principal.actor if principal is not None else "anonymous"
        self._spawn(self._record(actor, action, result, target, message, remote))

    async def _record(
        self, actor: str, action: str, result: str, target: str, message: str, remote: str
    ) -> None:
        if len(self._tasks) > 256:  # the store is slow or down: do not pile up writes
            log.warning("audit: dropped %s %s by %s (%s)", action, result, actor, target)
            return
        try:
            await self.store.record_audit(
                actor=actor,
                action=action,
                result=result,
                target=target,
                message=message,
                remote=remote,
            )
        except Exception as exc:
            log.warning("audit: cannot record %s %s by %s: %s", action, result, actor, exc)

    # -- adopting revisions --------------------------------------------------------------

    async def adopt(self, revision: int, objects: list[StoredObject], reason: str) -> None:
        async with self._adopt_lock:
            if revision <= self.store_revision:
                return
            self._set_stored(revision, objects)
            log.info("control plane: adopting store revision %d (%s)", revision, reason)
            await self.on_change(f"store revision {revision}")

    def _set_stored(self, revision: int, objects: list[StoredObject]) -> None:
        self.stored = {o.key: o for o in objects}
        self.store_revision = revision
        self._shadowed_reported &= set(self.stored)

    async def _on_feed_revision(self, revision: int) -> None:
        if revision <= self.store_revision:
            return
        latest, objects = await self.store.load()
        await self.adopt(latest, objects, "from the store")

    # -- view and watch ------------------------------------------------------------------

    def _refresh_view(self) -> None:
        view: dict[ObjectKey, Entry] = {}
        for key, res in self.files.items():
            manifest = normalise(res)
            owner = f"file:{res.origin.source}:{res.origin.line}"
            meta = manifest["metadata"]
            meta.setdefault("annotations", {})[OWNER_ANNOTATION] = owner
            meta["generation"] = 1
            view[key] = Entry(key, manifest, owner, 0, 1, dict(res.obj.metadata.labels))
        for key, obj in self.stored.items():
            if key in view:
                continue
            manifest = obj.manifest()
            manifest.pop("status", None)
            manifest["metadata"].setdefault("annotations", {})[OWNER_ANNOTATION] = API_SOURCE
            view[key] = Entry(
                key, manifest, API_SOURCE, obj.resource_version, obj.generation, dict(obj.labels)
            )
        old, self.view = self.view, view
        events: list[WatchEvent] = []
        for key, entry in view.items():
            before = old.get(key)
            if before is None:
                events.append(WatchEvent("ADDED", key, entry.manifest, self.store_revision))
            elif before.manifest != entry.manifest:
                events.append(WatchEvent("MODIFIED", key, entry.manifest, self.store_revision))
        for key, entry in old.items():
            if key not in view:
                events.append(WatchEvent("DELETED", key, entry.manifest, self.store_revision))
        if events:
            self.view_revision += 1
            self._publish(events)

    def _publish(self, events: list[WatchEvent]) -> None:
        for w in list(self.watchers):
            for ev in events:
                if not w.wants(ev.key):
                    continue
                try:
                    w.queue.put_nowait(ev)
                except asyncio.QueueFull:
                    # A watcher that cannot keep up is cut off (it re-lists on reconnect)
                    # rather than buffering without bound.
                    w.overflowed = True
                    self.watchers.discard(w)
                    with contextlib.suppress(asyncio.QueueFull):
                        w.queue.get_nowait()
                        w.queue.put_nowait(None)
                    break

    def subscribe(self, principal: Principal, kind: str | None, namespace: str | None) -> Watcher:
        w = Watcher(kind, namespace, principal)
        self.watchers.add(w)
        return w

    def unsubscribe(self, w: Watcher) -> None:
        self.watchers.discard(w)

    # -- rendering -----------------------------------------------------------------------

    def render(self, entry: Entry) -> dict[str, Any]:
        """The manifest with live ``status.conditions`` (computed on read)."""
        out = redacted(dict(entry.manifest))
        out["status"] = self._status(entry)
        return out

    def _status(self, entry: Entry) -> dict[str, Any]:
        problems = self.problems.get(entry.key, [])
        gen = entry.generation

        def cond(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
            status = "True" if ok else "False"
            seen = self._transitions.get((entry.key, type_))
            if seen is None or seen[0] != status:
                if len(self._transitions) > 100_000:
                    self._transitions.clear()
                seen = (status, rfc3339(datetime.now(UTC)))
                self._transitions[(entry.key, type_)] = seen
            return {
                "type": type_,
                "status": status,
                "reason": reason if not ok else type_,
                "message": message,
                "observedGeneration": gen,
                "lastTransitionTime": seen[1],
            }

        attach = [p for p in problems if p.path.startswith("spec.parentRefs")]
        refs = [p for p in problems if "backendRefs" in p.path or "overrides" in p.path]
        runtime = self.runtime()
        workers = runtime.get("workers", [])
        if entry.owner == API_SOURCE:
            done = [w for w in workers if w.get("storeRevision", 0) >= entry.resource_version]
            target = f"store revision {entry.resource_version}"
        else:
            current = runtime.get("revision", 0)
            done = [w for w in workers if w.get("revision", 0) >= current]
            target = f"revision {current}"
        programmed = bool(workers) and len(done) == len(workers)
        conditions = [
            cond(
                "Accepted",
                not attach,
                "NotAllowedByListeners",
                "; ".join(p.message for p in attach) or "accepted",
            ),
            cond(
                "ResolvedRefs",
                not refs,
                "BackendNotFound",
                "; ".join(p.message for p in refs) or "all references resolved",
            ),
            cond(
                "Programmed",
                programmed,
                "Pending",
                f"{len(done)}/{len(workers)} workers run {target}",
            ),
        ]
        status: dict[str, Any] = {"conditions": conditions}
        if entry.key[0] == "Backend":
            status["endpoints"] = _endpoint_status(entry.manifest, runtime.get("health", {}))
        elif entry.key[0] in KEYED_KINDS:
            status.update(self._keyed_status(entry, workers))
        return {
            **status,
            "workers": [
                {
                    "pid": w.get("pid"),
                    "revision": w.get("revision"),
                    "storeRevision": w.get("storeRevision"),
                }
                for w in workers
            ],
        }

    def _keyed_status(self, entry: Entry, workers: list[dict[str, Any]]) -> dict[str, Any]:
        """A Sandbox's or RouteGroup's key, expiry, and when each worker began routing it:
        the time the worker applied the first store revision that holds this version."""
        kind, ns, name = entry.key
        spec = entry.manifest.get("spec") or {}
        key = spec.get("routingKey") or derived_key(kind, ns, name)
        out: dict[str, Any] = {"routingKey": key}
        stored = self.stored.get(entry.key)
        at = expiry(stored) if stored is not None else None
        if at is not None:
            out["expiresAt"] = rfc3339(at)
        if entry.owner != API_SOURCE:
            return out
        since = []
        for w in workers:
            first = next(
                (t for rev, t in w.get("applied", ()) if rev >= entry.resource_version), None
            )
            since.append({"pid": w.get("pid"), "since": None if first is None else _iso(first)})
        times = [s["since"] for s in since]
        done = [t for t in times if t is not None]
        out["routable"] = {
            "workers": since,
            # ISO times with one layout sort as strings
            "allWorkersSince": max(done) if done and len(done) == len(times) else None,
        }
        return out

    # -- tokens --------------------------------------------------------------------------

    async def authenticate(self, header: str | None, remote: str, target: str) -> Principal:
        """The caller of an API request, or ``AuthError`` (401). Failures are audited."""
        if not header:
            await self.audit(None, "auth", "unauthenticated", target, "no token", remote)
            raise AuthError(401, "authentication required: send 'Authorization: Bearer <token>'")
        scheme, _, token = header.partition(" ")
        parts = split_token(token.strip()) if scheme.lower() == "bearer" else None
        if parts is None:
            await self.audit(None, "auth", "unauthenticated", target, "malformed token", remote)
            raise AuthError(401, "invalid token")
        token_id, secret = parts
        rec = await self._token_record(token_id)
        problem = None
        if rec is None or not secret_matches(secret, rec.secret_hash):
            problem = "invalid token"
        elif rec.revoked_at is not None:
            problem = "token revoked"
        elif is_expired(rec.expires_at):
            problem = "token expired"
        if problem is not None or rec is None:
            actor = f"token:{rec.name}" if rec is not None else "anonymous"
            self._spawn(
                self._record(actor, "auth", "unauthenticated", target, problem or "", remote)
            )
            raise AuthError(401, problem or "invalid token")
        self._spawn(self._touch(token_id))
        return Principal(rec.id, rec.name, Role.parse(rec.role), tuple(rec.namespaces))

    async def _token_record(self, token_id: str) -> TokenRecord | None:
        loop = asyncio.get_running_loop()
        cached = self._tokens.get(token_id)
        if cached is not None and loop.time() - cached[1] < TOKEN_CACHE_SECONDS:
            return cached[0]
        try:
            rec = await self.store.token(token_id)
        except StoreUnavailable:
            if cached is not None:  # keep answering reads while the store is away
                return cached[0]
            raise
        if rec is None:
            self._tokens.pop(token_id, None)
            return None
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[token_id] = (rec, loop.time())
        return rec

    async def _expire_sandboxes(self) -> None:
        """Delete Sandboxes whose ``ttl`` has run out (the leader does it, once)."""
        system = Principal("system", "sandbox-ttl", Role.ADMIN, (), via="system")
        while True:
            await asyncio.sleep(SANDBOX_SWEEP_SECONDS)
            if not self.is_leader:
                continue
            now = datetime.now(UTC)
            expired = [
                Change(
                    "delete",
                    obj.kind,
                    obj.namespace,
                    obj.name,
                    None,
                    expect_version=obj.resource_version,
                )
                for obj in self.stored.values()
                if obj.kind == "Sandbox" and (at := expiry(obj)) is not None and at <= now
            ]
            for change in expired:
                try:
                    await self.write([change], system, message="ttl expired", action="expire")
                except Exception as exc:  # a concurrent change, or the store is away
                    log.debug("expiring %s: %s", describe_key(*change.key), exc)
                else:
                    log.info("deleted %s: its ttl expired", describe_key(*change.key))

    async def _refresh_tokens(self) -> None:
        # Every token (a handful) is kept in memory and refreshed, so that reads keep
        # working with any valid token while the store is away, and a token revoked on
        # another replica stops working here within TOKEN_CACHE_SECONDS.
        loop = asyncio.get_running_loop()
        while True:
            try:
                records = await self.store.tokens(include_revoked=True)
            except Exception as exc:
                log.debug("token refresh failed: %s", exc)
            else:
                now = loop.time()
                self._tokens = {r.id: (r, now) for r in records}
            await asyncio.sleep(TOKEN_CACHE_SECONDS / 2)

    def forget_token(self, token_id: str) -> None:
        self._tokens.pop(token_id, None)

    async def _touch(self, token_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.store.touch_token(token_id)

    async def _bootstrap_token(self) -> None:
        if self.data_dir is None or await self.store.has_tokens():
            return
        tok = new_token()
        rec = TokenRecord(
            id=tok.id,
            name=BOOTSTRAP_TOKEN_NAME,
            role="admin",
            namespaces=[],
            secret_hash=tok.secret_hash,
            created_at=datetime.now(UTC),
            created_by="turnout serve",
            expires_at=None,
            revoked_at=None,
            last_used_at=None,
        )
        try:
            await self.store.create_token(rec)
        except Conflict:  # another replica created it at the same moment
            return
        path = self.data_dir / ADMIN_TOKEN_FILE
        write_secret(path, tok.token + "\n")
        await self.store.record_audit(
            actor="turnout serve",
            action="token.create",
            result="ok",
            target=f"token {BOOTSTRAP_TOKEN_NAME}",
            message=f"bootstrap admin token written to {path}",
        )
        log.info("bootstrap admin token written to %s (mode 0600)", path)


def _iso(timestamp: float) -> str:
    """A wall-clock time with milliseconds (routability is measured in them)."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _endpoint_status(manifest: dict[str, Any], health: dict[str, Any]) -> list[dict[str, Any]]:
    """Each endpoint of a Backend with the verdict of its active health checks, if any."""
    out = []
    spec = manifest.get("spec") or {}
    for ep in spec.get("endpoints") or ():
        address = str(ep.get("address", ""))
        try:
            key = str(parse_address(address, allow_missing_port=True))
        except AddressError:
            key = address
        st = health.get(key)
        item: dict[str, Any] = {"address": address}
        if st is None:
            item["health"] = "Unchecked"
        else:
            item["health"] = "Healthy" if st.get("healthy") else "Unhealthy"
            item["lastError"] = st.get("lastError", "")
            item["consecutive"] = st.get("consecutive", 0)
        out.append(item)
    return out


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically, never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
