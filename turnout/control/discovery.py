"""DNS SRV discovery: a Backend's ``spec.discovery`` endpoints, looked up off the request path.

``SRVDiscovery`` keeps, per looked-up (name, server), the last good endpoint list and
when it is due again. ``track`` learns the names the current configuration asks for (a
new one is due at once); ``refresh`` looks up every due name with a bounded timeout and
says whether any endpoint list changed; ``apply`` returns a ``ConfigSet`` whose
discovering Backends carry those endpoints (still none before the first answer).
A lookup that fails or returns nothing keeps the last good list and is logged once,
until that name resolves again. Resolution maps the SRV answer's lowest-priority group
to ``address:port`` endpoints (each target's A, else AAAA, addresses), SRV weight as
endpoint weight (0 becomes 1: weight 0 would take the endpoint out).

The supervisor passes every revision — files and stored objects alike — through
``fill`` (track, then apply); ``run`` is the loop that refreshes and asks the supervisor
to reload when the endpoints changed. dnspython is imported only when a Backend uses
discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from turnout.config.configset import ConfigSet
from turnout.config.model.backend import BackendObject, DiscoverySpec, EndpointSpec
from turnout.config.parse import Resource
from turnout.core.durations import parse_duration
from turnout.core.netaddr import parse_address

if TYPE_CHECKING:
    import dns.asyncresolver

log = logging.getLogger("turnout")

Endpoints = tuple[tuple[str, int], ...]  # (address, weight)
Key = tuple[str, str]  # (SRV name, server or "")
Resolve = Callable[[DiscoverySpec], Awaitable[Endpoints]]


class DiscoveryError(Exception):
    """A lookup that gave no usable endpoints."""


@dataclass(slots=True)
class _Entry:
    spec: DiscoverySpec
    due: float = 0.0
    endpoints: Endpoints | None = None  # None: never resolved yet
    failing: bool = False  # logged already: the next failure is quiet


@dataclass(slots=True)
class SRVDiscovery:
    resolve: Resolve
    clock: Callable[[], float] = time.monotonic
    entries: dict[Key, _Entry] = field(default_factory=dict)
    wake: asyncio.Event | None = None  # set when a new name needs a lookup

    @staticmethod
    def key(spec: DiscoverySpec) -> Key:
        return (spec.dns_srv.rstrip(".").lower(), spec.server or "")

    def track(self, config: ConfigSet) -> None:
        wanted: dict[Key, DiscoverySpec] = {}
        for backend in config.backends().values():
            if backend.spec.discovery is not None:
                wanted[self.key(backend.spec.discovery)] = backend.spec.discovery
        for key in list(self.entries):
            if key not in wanted:
                del self.entries[key]
        for key, spec in wanted.items():
            entry = self.entries.get(key)
            if entry is None:
                self.entries[key] = _Entry(spec, due=self.clock())
                if self.wake is not None:
                    self.wake.set()
            elif entry.spec != spec:  # another refresh or timeout: keep the endpoints
                entry.spec = spec
                entry.due = min(entry.due, self.clock() + parse_duration(spec.refresh))

    def next_due(self) -> float | None:
        return min((e.due for e in self.entries.values()), default=None)

    async def refresh(self) -> bool:
        """Look up every due name; True when any endpoint list changed."""
        now = self.clock()
        due = [(k, e) for k, e in self.entries.items() if e.due <= now]
        if not due:
            return False
        results = await asyncio.gather(*(self._lookup(e.spec) for _, e in due))
        changed = False
        for (key, entry), result in zip(due, results, strict=True):
            entry.due = self.clock() + parse_duration(entry.spec.refresh)
            if isinstance(result, str):
                if not entry.failing:
                    kept = "no endpoints yet" if entry.endpoints is None else "keeping the last"
                    log.warning("DNS SRV lookup of %s failed (%s); %s", key[0], result, kept)
                entry.failing = True
                continue
            if entry.failing:
                log.info("DNS SRV lookup of %s works again", key[0])
            entry.failing = False
            if result != entry.endpoints:
                entry.endpoints = result
                changed = True
        return changed

    async def _lookup(self, spec: DiscoverySpec) -> Endpoints | str:
        try:
            async with asyncio.timeout(parse_duration(spec.timeout)):
                found = await self.resolve(spec)
        except TimeoutError:
            return f"no answer within {spec.timeout}"
        except DiscoveryError as exc:
            return str(exc)
        except Exception as exc:  # a resolver bug or socket error must not stop the loop
            return f"{type(exc).__name__}: {exc}"
        if not found:
            return "no endpoints in the answer"
        return found

    def fill(self, config: ConfigSet) -> ConfigSet:
        """Track what ``config`` asks for and return it with the endpoints filled in."""
        self.track(config)
        return self.apply(config)

    def apply(self, config: ConfigSet) -> ConfigSet:
        """The configuration with each discovering Backend's endpoints filled in."""
        out: list[Resource] = []
        for r in config.resources:
            obj = r.obj
            if isinstance(obj, BackendObject) and obj.spec.discovery is not None:
                entry = self.entries.get(self.key(obj.spec.discovery))
                endpoints = tuple(
                    EndpointSpec(address=a, weight=w)
                    for a, w in (entry.endpoints if entry and entry.endpoints else ())
                )
                spec = obj.spec.model_copy(update={"endpoints": endpoints})
                r = Resource(obj.model_copy(update={"spec": spec}), r.origin, r.doc)
            out.append(r)
        return ConfigSet(out)


async def resolve_srv(spec: DiscoverySpec) -> Endpoints:
    """The lowest-priority SRV group as (``address:port``, weight), via dnspython."""
    import dns.asyncresolver  # only when a Backend uses discovery
    import dns.exception

    try:
        resolver = dns.asyncresolver.Resolver(configure=spec.server is None)
        if spec.server is not None:
            addr = parse_address(spec.server, allow_missing_port=True)
            resolver.nameservers = [addr.host]
            resolver.port = addr.port or 53
        resolver.lifetime = parse_duration(spec.timeout)
        answer = await resolver.resolve(spec.dns_srv, "SRV")
        records = list(answer)
        if not records:
            return ()
        lowest = min(r.priority for r in records)
        out: list[tuple[str, int]] = []
        for r in sorted(records, key=lambda r: (r.target.to_text(), r.port)):
            if r.priority != lowest:
                continue
            for host in await _addresses(resolver, r.target.to_text()):
                address = f"[{host}]:{r.port}" if ":" in host else f"{host}:{r.port}"
                out.append((address, max(1, r.weight)))
        return tuple(out)
    except dns.exception.DNSException as exc:
        raise DiscoveryError(str(exc) or type(exc).__name__) from None


async def _addresses(resolver: dns.asyncresolver.Resolver, target: str) -> list[str]:
    import dns.resolver

    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(target, rdtype)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        return sorted(r.address for r in answer)
    return []


async def run(discovery: SRVDiscovery, reload: Callable[[str], Awaitable[bool]]) -> None:
    """Refresh when due (or when a new name appears); reload on a change of endpoints."""
    wake = discovery.wake = asyncio.Event()
    while True:
        due = discovery.next_due()
        wait = None if due is None else max(0.0, due - discovery.clock())
        wake.clear()
        if wait is None or wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await wake.wait()
        if await discovery.refresh():
            await reload("DNS SRV endpoints changed")
