"""Releases compiled into the route split: ``ReleaseTable`` gives each backendRef to a
released Backend a ``ReleaseSplit`` (``tables.py``) and, for a blue-green preview, the
preview routing key as a sandbox-style override.

The traffic comes from the Release's state annotation (``phase`` and ``weight``, written
by the control plane's release reconciler and commands): every change of it is a store
revision, so every worker of every replica recompiles it like any other config change.
A Release that has not started, or that was aborted or degraded, compiles to nothing:
all traffic stays on stable. ``Promoted`` sends everything to the candidate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from turnout.config.configset import ConfigSet
from turnout.config.model.backend import BackendObject, EndpointSpec
from turnout.config.model.release import (
    DEFAULT_COOKIE,
    STATE_ANNOTATION,
    ReleaseObject,
    version_labels,
)
from turnout.observe.stats import WorkerStats
from turnout.proxy.snapshot.tables import (
    SPLIT_BUCKETS,
    SPLIT_CLAIM,
    SPLIT_CLIENT,
    SPLIT_CONSUMER,
    SPLIT_COOKIE,
    SPLIT_HEADER,
    SPLIT_RANDOM,
    BackendChoice,
    Cluster,
    ReleaseSplit,
)

LIVE_PHASES: Final = frozenset({"Progressing", "Paused"})
_BY: Final = {
    "cookie": SPLIT_COOKIE,
    "header": SPLIT_HEADER,
    "clientAddress": SPLIT_CLIENT,
    "consumer": SPLIT_CONSUMER,
    "jwtClaim": SPLIT_CLAIM,
    "random": SPLIT_RANDOM,
}

ClusterOf = Callable[[BackendObject, int | None], "Cluster | None"]
MakeCluster = Callable[[BackendObject, int | None, tuple[EndpointSpec, ...], str], Cluster]


def traffic(release: ReleaseObject) -> tuple[str, int]:
    """(phase, weight) from the state annotation; ("Pending", 0) without one."""
    raw = release.metadata.annotations.get(STATE_ANNOTATION)
    try:
        data: Any = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    phase = data.get("phase")
    weight = data.get("weight")
    return (
        phase if isinstance(phase, str) else "Pending",
        min(max(weight, 0), 100) if isinstance(weight, int) else 0,
    )


class ReleaseTable:
    def __init__(
        self,
        config: ConfigSet,
        backends: dict[tuple[str, str], BackendObject],
        stats: WorkerStats,
        cluster_of: ClusterOf,
        make_cluster: MakeCluster,
    ) -> None:
        self.stats = stats
        self.backends = backends
        self.cluster_of = cluster_of
        self.make_cluster = make_cluster
        self.clusters: dict[tuple[str, str, int | None], Cluster] = {}
        # (namespace, stable backend) -> (release, phase, weight): a live release before
        # a promoted one (an Environment's queue runs several of one Backend, one at a
        # time), then the first name
        self.by_backend: dict[tuple[str, str], tuple[ReleaseObject, str, int]] = {}
        found = []
        for res in config.of_kind("Release"):
            rel = res.obj
            assert isinstance(rel, ReleaseObject)
            phase, weight = traffic(rel)
            found.append((phase not in LIVE_PHASES, rel.metadata.name, rel, phase, weight))
        found.sort(key=lambda f: (f[0], f[1]))
        for _, _, rel, phase, weight in found:
            if phase in LIVE_PHASES or phase == "Promoted":
                key = (rel.metadata.namespace, rel.spec.backend)
                self.by_backend.setdefault(key, (rel, phase, weight))

    def __bool__(self) -> bool:
        return bool(self.by_backend)

    def preview_keys(self) -> dict[bytes, str]:
        """Blue-green preview keys in force, as the sandbox key table names them."""
        keys = {}
        for rel, phase, _ in self.by_backend.values():
            bg = rel.spec.strategy.blue_green
            if bg is not None and phase in LIVE_PHASES:
                keys[bg.preview_key.encode()] = (
                    f"Release {rel.metadata.namespace}/{rel.metadata.name}"
                )
        return keys

    def attach(
        self, choice: BackendChoice, route_label: str, namespace: str, port: int | None
    ) -> None:
        """Give ``choice`` (a backendRef resolved in ``namespace``) its release split."""
        if choice.cluster is None:
            return
        ns, _, name = choice.label.partition("/")
        found = self.by_backend.get((ns, name))
        if found is None or ns != namespace:
            return
        rel, phase, weight = found
        cluster = self._candidate_cluster(rel, port)
        if cluster is None:
            return  # an unresolved candidate: traffic stays on stable (validation warns)
        _, label = version_labels(ns, rel.metadata.name, rel.spec)
        candidate = BackendChoice(cluster, label, self.stats.cell(route_label, label))
        candidate.request_filters = choice.request_filters
        candidate.response_filters = choice.response_filters
        candidate.retry = choice.retry if cluster.retry is None else cluster.retry
        split = rel.spec.split
        by = _BY[split.by]
        name_b = (split.name or (DEFAULT_COOKIE if by == SPLIT_COOKIE else "")).encode()
        if by == SPLIT_HEADER:
            name_b = name_b.lower()
        pin = split.pin_session_cookie.encode() if split.pin_session_cookie else b""
        strategy = rel.spec.strategy
        match: tuple[tuple[bytes, bytes], ...] = ()
        threshold = weight * SPLIT_BUCKETS // 100
        if phase == "Promoted":
            threshold = SPLIT_BUCKETS
        elif strategy.ab_test is not None:
            match = tuple(
                (h.name.lower().encode(), h.value.encode()) for h in strategy.ab_test.headers
            )
        salt = f"{ns}/{rel.metadata.name}\0".encode()
        release = ReleaseSplit(candidate, threshold, by, name_b, salt, pin, match)
        release.stable_version = f"{ns}/{rel.metadata.name}:stable"
        release.candidate_version = f"{ns}/{rel.metadata.name}:candidate"
        candidate.version = release.candidate_version
        choice.release = release
        bg = strategy.blue_green
        if bg is not None and phase in LIVE_PHASES:
            choice.overrides = {**(choice.overrides or {}), bg.preview_key.encode(): candidate}

    def _candidate_cluster(self, rel: ReleaseObject, port: int | None) -> Cluster | None:
        ns = rel.metadata.namespace
        cand = rel.spec.candidate
        if cand.backend is not None:
            backend = self.backends.get((ns, cand.backend))
            return self.cluster_of(backend, port) if backend is not None else None
        stable = self.backends.get((ns, rel.spec.backend))
        if stable is None:
            return None
        key = (ns, f"{rel.spec.backend}@release:{rel.metadata.name}", port)
        cluster = self.clusters.get(key)
        if cluster is None:
            _, label = version_labels(ns, rel.metadata.name, rel.spec)
            cluster = self.clusters[key] = self.make_cluster(stable, port, cand.endpoints, label)
        return cluster
