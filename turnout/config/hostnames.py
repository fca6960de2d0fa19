"""Gateway API hostname semantics: wildcard matching, intersection and specificity.

A wildcard ``*.example.com`` matches any name with at least one more label in front
(``a.example.com``, ``a.b.example.com``) but not ``example.com`` itself. When a listener
and a route both name hostnames, the route serves the *intersection*: an exact name that
the other side's wildcard covers, or the narrower of two nested wildcards.
"""

from __future__ import annotations


def is_wildcard(name: str) -> bool:
    return name.startswith("*.")


def wildcard_matches(pattern: str, host: str) -> bool:
    """``pattern`` is ``*.suffix``; ``host`` is a concrete lowercase name."""
    suffix = pattern[1:]  # ".example.com"
    return host.endswith(suffix) and len(host) > len(suffix)


def hostname_matches(pattern: str, host: str) -> bool:
    if is_wildcard(pattern):
        return wildcard_matches(pattern, host)
    return pattern == host


def intersect(a: str, b: str) -> str | None:
    """The hostnames both ``a`` and ``b`` accept, as one name or wildcard, or None."""
    if a == b:
        return a
    wa, wb = is_wildcard(a), is_wildcard(b)
    if wa and not wb:
        return b if wildcard_matches(a, b) else None
    if wb and not wa:
        return a if wildcard_matches(b, a) else None
    if wa and wb:
        # *.foo.com is inside *.com: the longer suffix is the intersection.
        if a.endswith(b[1:]):
            return a
        if b.endswith(a[1:]):
            return b
    return None


def effective_hostnames(
    listener_hostname: str | None, route_hostnames: tuple[str, ...]
) -> list[str] | None:
    """Hostnames a route serves on a listener.

    Returns ``None`` when neither side restricts hosts (the route serves every host),
    an empty list when they do not intersect (the route does not attach), otherwise the
    intersection in route order without duplicates.
    """
    if not route_hostnames:
        return None if listener_hostname is None else [listener_hostname]
    if listener_hostname is None:
        return list(dict.fromkeys(route_hostnames))
    out: dict[str, None] = {}
    for name in route_hostnames:
        both = intersect(listener_hostname, name)
        if both is not None:
            out[both] = None
    return list(out)


def specificity(pattern: str | None) -> tuple[int, int]:
    """Sort key, larger is more specific: exact names beat wildcards, longer beats shorter.

    ``None`` (no hostname) is the least specific of all.
    """
    if pattern is None:
        return (0, 0)
    if is_wildcard(pattern):
        return (1, len(pattern))
    return (2, len(pattern))
