"""Cross-object checks of ``Release``: the Backends it names, and one Release per
released Backend. A missing Backend is a warning (traffic stays on stable until it
exists, as for a route's missing backend); two Releases of one Backend are an error
(which one splits would depend on names) unless their namespace belongs to an
Environment, whose release queue runs them one at a time."""

from __future__ import annotations

from turnout.config.model.backend import BackendObject
from turnout.config.model.environment import EnvironmentObject
from turnout.config.model.release import ReleaseObject
from turnout.config.parse import Resource
from turnout.config.problems import Problem


def validate_releases(
    resources: list[Resource],
    backends: dict[tuple[str, str], BackendObject],
    problems: list[Problem],
) -> None:
    released: dict[tuple[str, str], str] = {}
    queued = {
        ns
        for res in resources
        if isinstance(res.obj, EnvironmentObject)
        for ns in res.obj.spec.namespaces
    }
    for res in resources:
        obj = res.obj
        if not isinstance(obj, ReleaseObject):
            continue
        ns = obj.metadata.namespace
        spec = obj.spec
        if (ns, spec.backend) not in backends:
            problems.append(
                res.problem(
                    ("spec", "backend"),
                    f"Backend {ns}/{spec.backend} not found: the release has nothing to split",
                    "warning",
                )
            )
        cand = spec.candidate.backend
        if cand is not None and (ns, cand) not in backends:
            problems.append(
                res.problem(
                    ("spec", "candidate", "backend"),
                    f"Backend {ns}/{cand} not found: traffic stays on stable until it exists",
                    "warning",
                )
            )
        if ns in queued:
            continue
        first = released.setdefault((ns, spec.backend), obj.metadata.name)
        if first != obj.metadata.name:
            problems.append(
                res.problem(
                    ("spec", "backend"),
                    f"Backend {ns}/{spec.backend} is already released by Release {ns}/{first}",
                )
            )


def validate_environments(resources: list[Resource], problems: list[Problem]) -> None:
    """A namespace belongs to one Environment (its releases join one queue); ``next``
    names another Environment (a missing one is a warning: nothing is promoted)."""
    envs = [r for r in resources if isinstance(r.obj, EnvironmentObject)]
    names = {r.obj.metadata.name for r in envs}
    owner: dict[str, str] = {}
    for res in sorted(envs, key=lambda r: r.obj.metadata.name):
        obj = res.obj
        assert isinstance(obj, EnvironmentObject)
        name = obj.metadata.name
        for i, ns in enumerate(obj.spec.namespaces):
            first = owner.setdefault(ns, name)
            if first != name:
                problems.append(
                    res.problem(
                        ("spec", "namespaces", i),
                        f"namespace {ns} is already in Environment {first}: a namespace "
                        "belongs to one environment",
                    )
                )
        nxt = obj.spec.next
        if nxt == name:
            problems.append(res.problem(("spec", "next"), "an Environment cannot be its own next"))
        elif nxt is not None and nxt not in names:
            problems.append(
                res.problem(
                    ("spec", "next"),
                    f"Environment {nxt} not found: promoted releases stay here",
                    "warning",
                )
            )
