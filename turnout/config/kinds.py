"""The kinds registry: every kind Turnout understands, declared once.

Each ``KindEntry`` says what a kind is (group, versions, kind, plural, short names,
cluster-scoped or namespaced, the pydantic model of its objects) and how the rest of the
system treats it (served by the admin API, selected by a routing key, which listener
protocols a route kind attaches to, content kept beside ``metadata`` rather than under
``spec``, the columns ``turnout get`` shows). Everything that used to list kinds by hand
derives from ``REGISTRY``:

- ``config.model.KINDS`` (the parser's kind → model dispatch and validation's "known
  kinds") and ``config.attach.ROUTE_KINDS_BY_PROTOCOL``;
- ``control.objects.KIND_INFO`` / ``BY_PLURAL`` (the admin API's ``/kinds``, its object
  routes and their OpenAPI enums, ``/apply`` and ``/watch``) and the control plane's kind
  sets (routing-key kinds, top-level content);
- ``cli.kinds.BUILTIN`` (names ``turnout get`` accepts, ``get all``) and the per-kind table
  columns in ``cli.columns``.

The model is named, not imported: this module is stdlib only so the CLI can read the
registry without loading pydantic. ``config.model`` resolves the names when it builds
``KINDS`` (a missing model fails at import). Order matters: it is the order of
``/api/v1/kinds``, of ``turnout get all`` and of "known kinds" in error messages.
``tests/unit/config/test_kinds_registry.py`` fails when a kind list appears anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

GATEWAY_API_GROUP: Final = "gateway.networking.k8s.io"
TURNOUT_GROUP: Final = "turnout.dev"


@dataclass(frozen=True, slots=True)
class KindEntry:
    kind: str
    plural: str
    group: str  # "" for the Kubernetes core group (Namespace, Secret)
    version: str  # the version the server reports and writes
    model: str  # name of the object model class (turnout.config.model imports it)
    namespaced: bool = True
    short_names: tuple[str, ...] = ()  # also the CLI's aliases (``routes`` for HTTPRoute)
    # Other versions accepted on input (the model's apiVersion Literal checks them).
    also_accepted: tuple[str, ...] = ()
    served: bool = True  # stored and served through the admin API
    routing_key: bool = False  # selected per request by a routing key (Sandbox, RouteGroup)
    listener_protocols: tuple[str, ...] = ()  # for route kinds: listeners they attach to
    # Content beside metadata rather than under "spec" (a Secret's type/data/stringData).
    top_level_content: tuple[str, ...] = ()
    # ``turnout get`` columns (named in cli.columns), then those shown with ``-o wide``.
    columns: tuple[str, ...] = ()
    wide_columns: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_versions(self) -> tuple[str, ...]:
        """Every apiVersion accepted on input, the served one first."""
        prefix = f"{self.group}/" if self.group else ""
        return (self.api_version, *(prefix + v for v in self.also_accepted))


_K8S: Final = ""
_GW: Final = GATEWAY_API_GROUP
_TD: Final = TURNOUT_GROUP

REGISTRY: Final[tuple[KindEntry, ...]] = (
    KindEntry(
        "Namespace",
        "namespaces",
        _K8S,
        "v1",
        "NamespaceObject",
        namespaced=False,
        short_names=("ns",),
        wide_columns=("LABELS",),
    ),
    KindEntry(
        "Secret",
        "secrets",
        _K8S,
        "v1",
        "SecretObject",
        top_level_content=("type", "data", "stringData", "immutable"),
    ),
    KindEntry(
        "GatewayClass",
        "gatewayclasses",
        _GW,
        "v1",
        "GatewayClassObject",
        namespaced=False,
        short_names=("gc",),
        also_accepted=("v1beta1",),
        columns=("CONTROLLER", "ACCEPTED"),
        wide_columns=("DESCRIPTION",),
    ),
    KindEntry(
        "Gateway",
        "gateways",
        _GW,
        "v1",
        "GatewayObject",
        short_names=("gw", "gtw"),
        also_accepted=("v1beta1",),
        columns=("CLASS", "ADDRESS", "LISTENERS", "PROGRAMMED"),
    ),
    KindEntry(
        "HTTPRoute",
        "httproutes",
        _GW,
        "v1",
        "HTTPRouteObject",
        short_names=("route", "routes"),
        also_accepted=("v1beta1",),
        listener_protocols=("HTTP", "HTTPS"),
        columns=("HOSTNAMES", "PARENTS", "BACKENDS"),
        wide_columns=("RULES",),
    ),
    KindEntry(
        "GRPCRoute",
        "grpcroutes",
        _GW,
        "v1",
        "GRPCRouteObject",
        also_accepted=("v1alpha2",),
        listener_protocols=("HTTP", "HTTPS"),
    ),
    KindEntry(
        "TCPRoute",
        "tcproutes",
        _GW,
        "v1alpha2",
        "TCPRouteObject",
        listener_protocols=("TCP",),
    ),
    KindEntry(
        "TLSRoute",
        "tlsroutes",
        _GW,
        "v1alpha2",
        "TLSRouteObject",
        also_accepted=("v1",),
        listener_protocols=("TLS",),
    ),
    KindEntry(
        "Backend",
        "backends",
        _TD,
        "v1alpha1",
        "BackendObject",
        short_names=("be",),
        columns=("ENDPOINTS",),
        wide_columns=("HEALTH", "BALANCER", "PROTOCOL"),
    ),
    KindEntry(
        "TrafficPolicy",
        "trafficpolicies",
        _TD,
        "v1alpha1",
        "TrafficPolicyObject",
        short_names=("tp",),
        columns=("TARGETS", "FEATURES"),
    ),
    KindEntry(
        "Sandbox",
        "sandboxes",
        _TD,
        "v1alpha1",
        "SandboxObject",
        short_names=("sb",),
        routing_key=True,
        columns=("KEY", "OVERRIDES", "EXPIRES", "ROUTABLE"),
        wide_columns=("DESCRIPTION",),
    ),
    KindEntry(
        "RouteGroup",
        "routegroups",
        _TD,
        "v1alpha1",
        "RouteGroupObject",
        short_names=("rg",),
        routing_key=True,
        columns=("KEY", "MATCH"),
        wide_columns=("ROUTABLE", "DESCRIPTION"),
    ),
    KindEntry(
        "SecurityPolicy",
        "securitypolicies",
        _TD,
        "v1alpha1",
        "SecurityPolicyObject",
        short_names=("sp",),
    ),
    KindEntry(
        "Consumer",
        "consumers",
        _TD,
        "v1alpha1",
        "ConsumerObject",
        short_names=("consumer",),
    ),
    KindEntry(
        "Runbook",
        "runbooks",
        _TD,
        "v1alpha1",
        "RunbookObject",
        short_names=("rb",),
    ),
    KindEntry(
        "Mitigation",
        "mitigations",
        _TD,
        "v1alpha1",
        "MitigationObject",
        short_names=("mit",),
    ),
    KindEntry(
        "Release",
        "releases",
        _TD,
        "v1alpha1",
        "ReleaseObject",
        short_names=("rel",),
    ),
    KindEntry(
        "Environment",
        "environments",
        _TD,
        "v1alpha1",
        "EnvironmentObject",
        namespaced=False,
        short_names=("env",),
        columns=("NAMESPACES", "NEXT"),
        wide_columns=("BLACKOUTS",),
    ),
    KindEntry(
        "FilterPlugin",
        "filterplugins",
        _TD,
        "v1alpha1",
        "FilterPluginObject",
        short_names=("fp",),
    ),
)


class KindRegistry(Mapping[str, KindEntry]):
    """Entries by kind name, in declaration order; checked for clashes when built."""

    __slots__ = ("_by_kind", "_by_plural")

    def __init__(self, entries: Iterable[KindEntry]) -> None:
        self._by_kind: dict[str, KindEntry] = {}
        self._by_plural: dict[str, KindEntry] = {}
        names: dict[str, str] = {}
        for entry in entries:
            for name in (entry.kind.lower(), entry.plural, *entry.short_names):
                owner = names.setdefault(name, entry.kind)
                if owner != entry.kind:
                    raise ValueError(f"{name!r} names both {owner} and {entry.kind}")
            self._by_kind[entry.kind] = entry
            self._by_plural[entry.plural] = entry

    def __getitem__(self, kind: str) -> KindEntry:
        return self._by_kind[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_kind)

    def __len__(self) -> int:
        return len(self._by_kind)

    def by_plural(self, plural: str) -> KindEntry | None:
        return self._by_plural.get(plural)

    def served(self) -> tuple[KindEntry, ...]:
        return tuple(e for e in self._by_kind.values() if e.served)

    def where(self, **flags: bool) -> frozenset[str]:
        """Kind names whose boolean attributes equal ``flags`` (``where(routing_key=True)``)."""
        return frozenset(
            e.kind
            for e in self._by_kind.values()
            if all(getattr(e, flag) == want for flag, want in flags.items())
        )


KINDS: Final = KindRegistry(REGISTRY)

# Derived kind sets other layers use; named for what they mean.
ROUTING_KEY_KINDS: Final = KINDS.where(routing_key=True)


def route_kinds_by_protocol(registry: KindRegistry = KINDS) -> dict[str, tuple[str, ...]]:
    """Listener protocol → the route kinds it accepts (and admits when
    ``allowedRoutes.kinds`` is empty), in registry order."""
    out: dict[str, tuple[str, ...]] = {}
    for entry in registry.values():
        for protocol in entry.listener_protocols:
            out[protocol] = (*out.get(protocol, ()), entry.kind)
    return out


def top_level_content(registry: KindRegistry = KINDS) -> dict[str, tuple[str, ...]]:
    return {e.kind: e.top_level_content for e in registry.values() if e.top_level_content}
