"""``SecurityPolicy.extAuth`` checks: the authorization service's backendRef (a Backend in
the policy's namespace, plain HTTP), the path prefix, the timeout and the cache."""

from __future__ import annotations

from turnout.config.kinds import TURNOUT_GROUP
from turnout.config.model.backend import BackendObject
from turnout.config.model.security import SecurityPolicyObject
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.core.durations import parse_duration


def check_ext_auth(
    res: Resource,
    policy: SecurityPolicyObject,
    backends: dict[tuple[str, str], BackendObject],
    problems: list[Problem],
) -> None:
    spec = policy.spec.ext_auth
    if spec is None:
        return
    base = ("spec", "extAuth")
    ref = spec.http.backend_ref
    rpath = (*base, "http", "backendRef")
    ns = policy.metadata.namespace
    if (ref.group, ref.kind) not in (("", "Service"), (TURNOUT_GROUP, "Backend")):
        problems.append(
            res.problem((*rpath, "kind"), f"unsupported backend kind {ref.group}/{ref.kind}")
        )
    elif (ref.namespace or ns) != ns:
        problems.append(
            res.problem(
                (*rpath, "namespace"), "the authorization service must be in the policy's namespace"
            )
        )
    else:
        backend = backends.get((ns, ref.name))
        if backend is None:
            outcome = "requests go on (failOpen)" if spec.fail_open else "requests answer 403"
            problems.append(
                res.problem(
                    (*rpath, "name"),
                    f"Backend {ns}/{ref.name} does not exist; {outcome}",
                    "warning",
                )
            )
        elif backend.spec.tls is not None:
            problems.append(
                res.problem(
                    (*rpath, "name"),
                    "TLS to the authorization service is not supported yet (plain HTTP only)",
                )
            )
    path = spec.http.path
    if path and not path.startswith("/"):
        problems.append(res.problem((*base, "http", "path"), "path must start with '/'"))
    if parse_duration(spec.timeout) <= 0:
        problems.append(res.problem((*base, "timeout"), "must be longer than 0s"))
    if spec.cache is not None and parse_duration(spec.cache.ttl) <= 0:
        problems.append(res.problem((*base, "cache", "ttl"), "must be longer than 0s"))
