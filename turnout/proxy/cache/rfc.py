"""HTTP caching rules (RFC 9111, a *shared* cache), sans-IO: no clock, no sockets.

Everything here is a pure function of header values and times handed in, so the unit
tests drive it with plain numbers. What it decides:

* ``storable``: may a response be stored (§3) — method GET, a configured status, no
  ``no-store`` (request or response), no ``private`` (we are a shared cache), no
  ``Vary: *``, a request with ``Authorization`` only when the response allows it
  (``public``, ``s-maxage``, ``must-revalidate``; §3.5) or the policy says so, no
  ``Set-Cookie`` unless the policy says so, and something to go by: an explicit
  lifetime, the policy's default TTL, or a validator to revalidate with.
* ``Freshness`` of a stored response (§4.2): lifetime from ``s-maxage``, ``max-age``,
  ``Expires`` − ``Date`` or the policy's heuristic default; the age from ``Age``, ``Date``
  and the local receive time (§4.2.3); ``no-cache`` / ``must-revalidate`` /
  ``proxy-revalidate`` and the extensions ``stale-while-revalidate`` and
  ``stale-if-error`` (RFC 5861) for what may be served once stale.
* Client conditionals (RFC 9110 §13): ``If-None-Match`` (weak comparison) and, only
  without it, ``If-Modified-Since`` — a stored response that satisfies them answers 304.
* Merging a 304 from upstream into the stored response (§4.3.4).

Why hand-written: the PyPI candidates (``CacheControl``, ``hishel``, ``http-cache``) are
either tied to requests/httpx transports or implement a *private* cache; none is a small
sans-IO core that works on our bytes headers, and the hot path here is a dict lookup and
a few comparisons that a general library would wrap in objects per request.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Final

from turnout.proxy.protocols.heads import Headers

# Fields never stored nor replayed from the cache (the exchange frames each response
# itself; hop-by-hop fields never reach ``headers``). ``age`` is recomputed on each hit.
UNSTORED: Final = frozenset({b"age", b"x-cache", b"x-request-id", b"connection"})
# Fields a 304 must carry when it stands for the stored 200 (RFC 9110 §15.4.5).
NOT_MODIFIED_FIELDS: Final = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary"}
)


def parse_directives(value: bytes | None) -> dict[bytes, bytes]:
    """``Cache-Control`` as ``{directive: argument}`` (b"" when it has none); directive
    names are case-insensitive, quoted arguments lose their quotes (§5.2)."""
    out: dict[bytes, bytes] = {}
    if not value:
        return out
    for part in value.split(b","):
        name, sep, arg = part.partition(b"=")
        name = name.strip().lower()
        if not name:
            continue
        arg = arg.strip()
        if sep and len(arg) >= 2 and arg[:1] == b'"' and arg[-1:] == b'"':
            arg = arg[1:-1]
        out.setdefault(name, arg)
    return out


def seconds(value: bytes | None) -> int | None:
    """A delta-seconds argument (§1.2.2): non-negative integer, else None (invalid)."""
    if value is None or not value.isdigit():
        return None
    return min(int(value), 2**31)


def http_date(value: bytes | None) -> float | None:
    """An HTTP-date as a POSIX timestamp, None when absent or invalid (§5.3: an invalid
    Expires means "already expired", which callers treat as lifetime 0)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def field(headers: Headers, name: bytes) -> bytes | None:
    """A field's value, repeated lines joined by "," (list semantics)."""
    found: bytes | None = None
    for n, v in headers:
        if n == name:
            found = v if found is None else found + b"," + v
    return found


def vary_names(headers: Headers) -> tuple[bytes, ...] | None:
    """The lowercase field names of ``Vary``, sorted; None for ``Vary: *``."""
    value = field(headers, b"vary")
    if not value:
        return ()
    names = sorted({n.strip().lower() for n in value.split(b",") if n.strip()})
    if b"*" in names:
        return None
    return tuple(names)


def normalise_vary_value(value: bytes | None) -> bytes:
    """A request field's value for secondary keys: whitespace around list members
    dropped (§4.1 allows normalising a field's syntax)."""
    if value is None:
        return b"\x00"  # absent differs from empty
    return b",".join(v.strip() for v in value.split(b","))


class Freshness:
    """What a stored response's headers say about how long it may be served.

    ``lifetime`` (seconds, §4.2.1), ``initial_age`` (the corrected initial age, §4.2.3),
    ``stored_at`` (local receive time), ``no_cache`` (always revalidate),
    ``must_revalidate`` (never served stale), ``swr`` / ``sie`` (seconds a stale response
    may still be served while revalidating / when the upstream fails).
    """

    __slots__ = (
        "initial_age",
        "lifetime",
        "must_revalidate",
        "no_cache",
        "sie",
        "stored_at",
        "swr",
    )

    def __init__(
        self,
        lifetime: float,
        initial_age: float,
        stored_at: float,
        no_cache: bool = False,
        must_revalidate: bool = False,
        swr: float = 0.0,
        sie: float = 0.0,
    ) -> None:
        self.lifetime = lifetime
        self.initial_age = initial_age
        self.stored_at = stored_at
        self.no_cache = no_cache
        self.must_revalidate = must_revalidate
        self.swr = swr
        self.sie = sie

    def age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.stored_at)

    def fresh(self, now: float) -> bool:
        return not self.no_cache and self.age(now) < self.lifetime

    def staleness(self, now: float) -> float:
        """How long past its lifetime (≤ 0: still fresh)."""
        return self.age(now) - self.lifetime

    def serve_while_revalidating(self, now: float) -> bool:
        return not self.must_revalidate and not self.no_cache and self.staleness(now) <= self.swr

    def serve_on_error(self, now: float) -> bool:
        return not self.must_revalidate and not self.no_cache and self.staleness(now) <= self.sie


def freshness(
    headers: Headers,
    request_time: float,
    response_time: float,
    default_ttl: float | None,
) -> Freshness:
    """The ``Freshness`` of a response received at ``response_time`` for a request sent
    at ``request_time`` (local clock, seconds)."""
    cc = parse_directives(field(headers, b"cache-control"))
    date = http_date(field(headers, b"date"))
    lifetime: float | None = None
    if b"s-maxage" in cc:
        lifetime = seconds(cc[b"s-maxage"]) or 0
    elif b"max-age" in cc:
        lifetime = seconds(cc[b"max-age"]) or 0
    else:
        expires_raw = field(headers, b"expires")
        if expires_raw is not None:
            expires = http_date(expires_raw)
            base = date if date is not None else response_time
            lifetime = max(0.0, expires - base) if expires is not None else 0.0
    if lifetime is None:
        lifetime = default_ttl or 0.0
    # §4.2.3: the corrected initial age
    apparent = max(0.0, response_time - date) if date is not None else 0.0
    age_value = seconds(field(headers, b"age")) or 0
    corrected = age_value + (response_time - request_time)
    initial_age = max(apparent, corrected)
    must = b"must-revalidate" in cc or b"proxy-revalidate" in cc or b"s-maxage" in cc
    return Freshness(
        float(lifetime),
        initial_age,
        response_time,
        no_cache=b"no-cache" in cc,
        must_revalidate=must,
        swr=float(seconds(cc.get(b"stale-while-revalidate")) or 0),
        sie=float(seconds(cc.get(b"stale-if-error")) or 0),
    )


def storable(
    method: bytes,
    status: int,
    statuses: frozenset[int],
    request: dict[bytes, bytes],
    headers: Headers,
    cache_authorized: bool,
    cache_set_cookie: bool,
    default_ttl: float | None,
) -> bool:
    """May this response be stored by a shared cache (§3)? ``request``: the request's
    fields (``RequestHead.received``), ``headers``: the response's."""
    if method != b"GET" or status not in statuses:
        return False
    req_cc = parse_directives(request.get(b"cache-control"))
    if b"no-store" in req_cc:
        return False
    cc = parse_directives(field(headers, b"cache-control"))
    if b"no-store" in cc or b"private" in cc:
        return False
    if vary_names(headers) is None:
        return False
    allowed = b"public" in cc or b"s-maxage" in cc or b"must-revalidate" in cc
    if b"authorization" in request and not cache_authorized and not allowed:
        return False
    if not cache_set_cookie and field(headers, b"set-cookie") is not None:
        return False
    if b"max-age" in cc or b"s-maxage" in cc or b"public" in cc:
        return True
    if field(headers, b"expires") is not None or default_ttl:
        return True
    return field(headers, b"etag") is not None or field(headers, b"last-modified") is not None


def request_wants_fresh(request: dict[bytes, bytes]) -> bool:
    """The client asked for an end-to-end revalidation (``no-cache``, ``max-age=0``, or
    ``Pragma: no-cache`` without ``Cache-Control``; §5.2.1)."""
    value = request.get(b"cache-control")
    if value is None:
        pragma = request.get(b"pragma")
        return pragma is not None and b"no-cache" in pragma.lower()
    cc = parse_directives(value)
    return b"no-cache" in cc or cc.get(b"max-age") == b"0"


def _etags(value: bytes) -> list[bytes]:
    return [t.strip().removeprefix(b"W/") for t in value.split(b",") if t.strip()]


def not_modified(
    request: dict[bytes, bytes], etag: bytes | None, last_modified: bytes | None
) -> bool:
    """Does the client's conditional match the stored response (RFC 9110 §13.1.2/§13.1.3,
    weak comparison for If-None-Match; If-Modified-Since only without If-None-Match)?"""
    inm = request.get(b"if-none-match")
    if inm is not None:
        if etag is None:
            return False
        tags = _etags(inm)
        return b"*" in tags or etag.strip().removeprefix(b"W/") in tags
    ims = request.get(b"if-modified-since")
    if ims is None or last_modified is None:
        return False
    since = http_date(ims)
    modified = http_date(last_modified)
    return since is not None and modified is not None and modified <= since


def not_modified_headers(headers: Headers) -> Headers:
    """The fields of a stored 200 that its 304 carries (plus Last-Modified)."""
    return [(n, v) for n, v in headers if n in NOT_MODIFIED_FIELDS or n == b"last-modified"]


def merge_not_modified(stored: Headers, fresh: Headers) -> Headers:
    """A stored response's fields updated by a 304's (§4.3.4): each field the 304 carries
    replaces the stored one, except the framing ones."""
    skip = {b"content-length", b"content-encoding", b"transfer-encoding", b"content-range"}
    replaced = {n for n, _ in fresh if n not in skip and n not in UNSTORED}
    out = [(n, v) for n, v in stored if n not in replaced]
    out.extend((n, v) for n, v in fresh if n in replaced)
    return out
