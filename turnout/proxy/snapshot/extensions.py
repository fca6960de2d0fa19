"""Compiling the parts of a rule's filter chain that live outside ``SnapshotBuilder``: a
SecurityPolicy's ``extAuth`` check (its service's endpoints as URLs) and ``bruteForce``
guard (one per policy), and the filters of an ``ExtensionRef`` to a FilterPlugin."""

from __future__ import annotations

from turnout.config.model.backend import BackendObject
from turnout.config.model.routes import HTTPRouteObject, LocalObjectReference
from turnout.config.model.security import SecurityPolicyObject
from turnout.core.durations import parse_duration
from turnout.core.netaddr import parse_address
from turnout.observe.stats import WorkerStats
from turnout.proxy.filters.auth.chain import AuthFilter
from turnout.proxy.filters.base import RequestFilter, ResponseFilter, request_filter
from turnout.proxy.filters.bruteforce import BruteForceGuard
from turnout.proxy.filters.extauth import ExtAuthFilter
from turnout.proxy.filters.plugin import MissingPluginFilter
from turnout.proxy.filters.plugin_host import LoadedPlugin
from turnout.proxy.ratelimit.local import LocalStore


def ext_auth_for(
    compiled: dict[str, RequestFilter],
    policy: SecurityPolicyObject,
    backends: dict[tuple[str, str], BackendObject],
) -> RequestFilter:
    """One per policy and snapshot: its decision cache is shared by every rule the policy
    covers."""
    label = f"{policy.metadata.namespace}/{policy.metadata.name}"
    found = compiled.get(label)
    if found is None:
        found = compiled[label] = request_filter(compile_ext_auth(policy, backends))
    return found


def compile_ext_auth(
    policy: SecurityPolicyObject, backends: dict[tuple[str, str], BackendObject]
) -> ExtAuthFilter:
    spec = policy.spec.ext_auth
    assert spec is not None
    ns = policy.metadata.namespace
    ref = spec.http.backend_ref
    urls: list[str] = []
    backend = backends.get((ns, ref.name))
    if backend is not None and (ref.namespace or ns) == ns:
        for ep in backend.spec.endpoints:
            addr = parse_address(ep.address, allow_missing_port=True)
            if addr.is_unix:
                continue  # the HTTP client speaks TCP
            if addr.port == 0:
                if ref.port is None:
                    continue
                addr = parse_address(ep.address, default_port=ref.port)
            urls.append(f"http://{addr}")
    cache = spec.cache
    return ExtAuthFilter(
        f"{ns}/{policy.metadata.name}",
        urls,
        spec.http.path.rstrip("/"),
        tuple(h.lower().encode() for h in spec.headers_to_ext_auth),
        tuple(h.lower().encode() for h in spec.http.headers_to_backend),
        parse_duration(spec.timeout),
        spec.fail_open,
        parse_duration(cache.ttl) if cache is not None else 0.0,
        cache.max_entries if cache is not None else 0,
    )


def add_plugin(
    plugins: dict[tuple[str, str], LoadedPlugin],
    route: HTTPRouteObject,
    ref: LocalObjectReference,
    request: list[RequestFilter],
    response: list[ResponseFilter],
) -> None:
    """One ExtensionRef: the FilterPlugin's hooks, in the rule's filter order (the
    reference's group and kind were checked by validation); a missing one answers 500."""
    namespace, name = route.metadata.namespace, ref.name
    loaded = plugins.get((namespace, name))
    if loaded is None:
        request.append(request_filter(MissingPluginFilter(f"{namespace}/{name}")))
        return
    on_request, on_response = loaded.filters()
    if on_request is not None:
        request.append(on_request)
    if on_response is not None:
        response.append(on_response)


def brute_force_guard(
    guards: dict[str, BruteForceGuard],
    policy: SecurityPolicyObject,
    auth: AuthFilter,
    local: LocalStore | None,
    stats: WorkerStats,
) -> BruteForceGuard | None:
    """The policy's bruteForce bans, in the host-wide table (one guard per policy)."""
    spec = policy.spec.brute_force
    if spec is None:
        return None
    label = f"{policy.metadata.namespace}/{policy.metadata.name}"
    guard = guards.get(label)
    if guard is None:
        if local is None:  # a trial build or a test: a small table of its own
            local = LocalStore.private(1024)
        guard = guards[label] = BruteForceGuard(
            label, spec.max_failures, spec.window, spec.ban_for, local, stats
        ).follow(auth, spec.by_consumer)
    return guard
