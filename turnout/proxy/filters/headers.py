"""``RequestHeaderModifier`` / ``ResponseHeaderModifier``: set, add and remove headers.

``set`` replaces every value of a name, ``add`` appends one more value, ``remove``
deletes every value; names compare case-insensitively. Setting ``Host`` on a request
changes the upstream authority (the codec keeps Host out of the header list).
"""

from __future__ import annotations

from turnout.config.model.routes import HTTPHeaderFilter
from turnout.proxy.filters.base import (
    FilterContext,
    LocalReply,
    RequestFilter,
    ResponseFilter,
    Verdict,
)
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead


class HeaderModifier:
    __slots__ = ("_add", "_drop", "_set", "host")

    def __init__(self, spec: HTTPHeaderFilter) -> None:
        self.host: bytes | None = None
        sets: Headers = []
        for h in spec.set:
            name = h.name.lower().encode()
            if name == b"host":
                self.host = h.value.encode()
            else:
                sets.append((name, h.value.encode()))
        adds: Headers = []
        for h in spec.add:
            name = h.name.lower().encode()
            if name == b"host":
                self.host = self.host or h.value.encode()
            else:
                adds.append((name, h.value.encode()))
        removes = {n.lower().encode() for n in spec.remove}
        self._set = sets
        self._add = [a for a in adds if a[0] not in removes]
        self._drop = frozenset(removes | {n for n, _ in sets})

    def apply(self, headers: Headers) -> Headers:
        if self._drop:
            drop = self._drop
            headers = [h for h in headers if h[0] not in drop]
        if self._set:
            headers.extend(self._set)
        if self._add:
            headers.extend(self._add)
        return headers

    def apply_request(self, head: RequestHead) -> None:
        head.headers = self.apply(head.headers)
        if self.host is not None:
            head.authority = self.host


class RequestHeaderFilter(RequestFilter):
    """``RequestHeaderModifier`` as a request filter."""

    __slots__ = ("modifier",)

    def __init__(self, modifier: HeaderModifier) -> None:
        self.modifier = modifier

    def on_request(self, ctx: FilterContext) -> Verdict:
        self.modifier.apply_request(ctx.head)
        return None


class ResponseHeaderFilter(ResponseFilter):
    """``ResponseHeaderModifier`` as a response filter."""

    __slots__ = ("modifier",)

    def __init__(self, modifier: HeaderModifier) -> None:
        self.modifier = modifier

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        head.headers = self.modifier.apply(head.headers)
        return None
