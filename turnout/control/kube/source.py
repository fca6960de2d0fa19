"""``KubernetesSource``: the cluster as a config source, beside files and the admin API.

Start-up (``connect``) asks the server which versions it serves (Gateway API kinds at
``v1``, else ``v1beta1``/``v1alpha2``; EndpointSlices at ``discovery.k8s.io/v1``, else
``v1beta1``; Turnout's kinds when their CRDs are installed), lists every watched kind
once and only then lets the supervisor start, so the first revision already holds the
cluster's routes. ``run`` then keeps one ``Informer`` per kind watching; any change
schedules one reload (changes arriving within ``DEBOUNCE`` are coalesced), and after each
reload the ``StatusWriter`` writes what Turnout made of each object back to the cluster.
A change that leaves the translated manifests as they were (a status write, often our
own, or an object that is not ours) skips the reload and only refreshes the status pass.

``load`` is synchronous and does no I/O: it translates the informers' caches
(``translate``) and validates them together with the ``-f`` files. Unlike a file, one bad
cluster object must not block everyone else's routes, so an object with errors is left
out of the revision (its errors go to its status and the log) and the rest is validated
again; errors in ``-f`` files still reject the revision as they do without Kubernetes.
While the API server is unreachable the caches, and so the served revision, stay as
they were.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from turnout.config.configset import ConfigSet
from turnout.config.files import load_files
from turnout.config.kinds import GATEWAY_API_GROUP, KINDS, TURNOUT_GROUP
from turnout.config.parse import Resource, parse_documents
from turnout.config.problems import Problem
from turnout.config.validate import validate
from turnout.config.yamldocs import Document
from turnout.control.kube.client import KubeClient, ResourceType
from turnout.control.kube.connection import KubeConnection
from turnout.control.kube.informer import Informer
from turnout.control.kube.translate import DEFAULT_CONTROLLER, Translation, translate
from turnout.core.tasks import spawn

log = logging.getLogger("turnout.kube")

SOURCE = "kubernetes"
DEBOUNCE = 0.05
# Kinds read from the cluster that Turnout's registry does not model as objects:
# kind -> (group, candidate versions (the first served wins), plural, namespaced)
EXTRA: dict[str, tuple[str, tuple[str, ...], str, bool]] = {
    "ReferenceGrant": (GATEWAY_API_GROUP, ("v1beta1", "v1alpha2"), "referencegrants", True),
    "Service": ("", ("v1",), "services", True),
    "EndpointSlice": ("discovery.k8s.io", ("v1", "v1beta1"), "endpointslices", True),
}


def candidates() -> dict[str, tuple[str, tuple[str, ...], str, bool]]:
    """Every kind to watch (from the kinds registry, plus ``EXTRA``); Turnout's own kinds
    are keyed ``turnout.dev/<Kind>``."""
    out: dict[str, tuple[str, tuple[str, ...], str, bool]] = {}
    for e in KINDS.values():
        key = f"{TURNOUT_GROUP}/{e.kind}" if e.group == TURNOUT_GROUP else e.kind
        out[key] = (e.group, (e.version, *e.also_accepted), e.plural, e.namespaced)
    out.update(EXTRA)
    return out


def watched_types(served: dict[tuple[str, str], set[str]]) -> dict[str, ResourceType]:
    """The resource types to watch, given what each group/version serves."""
    out: dict[str, ResourceType] = {}
    for key, (group, versions, plural, namespaced) in candidates().items():
        for version in versions:
            if plural in served.get((group, version), set()):
                kind = key.rpartition("/")[2]
                out[key] = ResourceType(group, version, plural, kind, namespaced)
                break
    return out


class KubernetesSource:
    def __init__(
        self,
        connection: KubeConnection,
        files: list[str] | None = None,
        controller: str = DEFAULT_CONTROLLER,
    ) -> None:
        self.connection = connection
        self.files = list(files or [])
        self.controller = controller
        self.name = f"Kubernetes ({connection.server})" + (
            f" and {', '.join(self.files)}" if self.files else ""
        )
        self.client = KubeClient(connection)
        self.informers: dict[str, Informer] = {}
        self.translation = Translation()
        self.problems: dict[str, list[Problem]] = {}  # "Kind ns/name" -> its problems
        self.rejected: set[str] = set()  # refs left out of the revision for their errors
        self._dirty = asyncio.Event()
        self.reload_ok = True  # whether the supervisor took the latest translation

    # -- ConfigSource ---------------------------------------------------------------------

    def watch_paths(self) -> list[Path]:
        return []  # changes come from the watches, not from files

    def is_relevant(self, changed: Path) -> bool:
        return False

    def load(self) -> tuple[ConfigSet, list[Problem]]:
        file_resources: list[Resource] = []
        problems: list[Problem] = []
        if self.files:
            files_config, problems = load_files(self.files)
            file_resources = files_config.resources
        self.translation = translate(self.cluster(), self.controller)
        docs = [
            Document(SOURCE, i, manifest, 0)
            for i, manifest in enumerate(self.translation.manifests)
        ]
        resources, parse_problems = parse_documents(docs, len(file_resources))
        by_ref: dict[str, list[Problem]] = {}
        for p in parse_problems:
            by_ref.setdefault(p.obj or "", []).append(p)
        rejected = {p.obj for p in parse_problems if p.severity == "error" and p.obj}
        kube_refs = {r.ref for r in resources}
        for _ in range(4):  # dropping an object can only remove errors of its referrers
            config, more = validate(file_resources + resources)
            bad = {p.obj for p in more if p.severity == "error" and p.obj in kube_refs and p.obj}
            if not bad:
                break
            for p in more:
                if p.obj in bad:
                    by_ref.setdefault(p.obj or "", []).append(p)
            rejected |= bad
            resources = [r for r in resources if r.ref not in bad]
        for p in more:
            if p.obj in kube_refs and p.severity != "error":
                by_ref.setdefault(p.obj or "", []).append(p)
        for ref in sorted(rejected - self.rejected):
            log.error("%s left out: %s", ref, "; ".join(_short(p) for p in by_ref.get(ref, [])))
        self.problems, self.rejected = by_ref, rejected
        file_problems = [p for p in problems + more if p.obj not in kube_refs]
        return config, file_problems

    # -- watching -------------------------------------------------------------------------

    def cluster(self) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
        return {kind: inf.objects for kind, inf in self.informers.items()}

    async def connect(self) -> None:
        """Discover what the server serves and list every watched kind once."""
        served: dict[tuple[str, str], set[str]] = {}
        wanted = candidates()
        pairs = {(g, v) for g, versions, _, _ in wanted.values() for v in versions}
        for group, version in sorted(pairs):
            served[(group, version)] = await self.client.served(group, version)
        types = watched_types(served)
        missing = sorted(set(wanted) - set(types))
        if missing:
            log.info("not served by this cluster (CRDs not installed?): %s", ", ".join(missing))
        self.informers = {kind: Informer(self.client, rt, self.poke) for kind, rt in types.items()}
        await asyncio.gather(*(inf.list_once() for inf in self.informers.values()))
        self._dirty.clear()

    def poke(self) -> None:
        """Schedule a reload (and a status pass)."""
        self._dirty.set()

    @property
    def connected(self) -> bool:
        return all(inf.connected for inf in self.informers.values())

    async def run(
        self,
        reload: Callable[[str], Awaitable[bool]],
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Watch forever; reload on changes; call ``after`` after each reload (status)."""
        tasks = [spawn(inf.run(), name=f"watch-{kind}") for kind, inf in self.informers.items()]
        try:
            if after is not None:
                await after()
            while True:
                await self._dirty.wait()
                await asyncio.sleep(DEBOUNCE)
                self._dirty.clear()
                fresh = translate(self.cluster(), self.controller)
                if _digest(fresh) != _digest(self.translation):
                    self.reload_ok = await reload("kubernetes change")
                else:  # only statuses (often our own writes) or ignored objects changed
                    self.translation = fresh
                if after is not None:
                    await after()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.client.close()


def _digest(t: Translation) -> str:
    return hashlib.sha256(json.dumps(t.manifests, sort_keys=True).encode()).hexdigest()


def _short(p: Problem) -> str:
    return f"{p.path}: {p.message}" if p.path else p.message
