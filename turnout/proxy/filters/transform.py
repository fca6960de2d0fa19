"""The built-in ``transform`` filter plugin: request header/query/path/method transforms
and response header transforms, configured by a FilterPlugin (``spec.plugin: transform``,
config model ``config.model.transform``) and attached with ExtensionRef like any plugin.

Everything is compiled when the plugin is constructed or reconfigured: templates become
tuples of literal bytes and getters, the path regex is compiled once, header sets are
frozensets. Per request a transform walks the header list once (rename and remove) and
appends the rendered values; the query string is parsed only when a query transform is
configured. Header transforms never touch the body, so nothing is buffered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlencode

from turnout.config.model.transform import (
    PLACEHOLDER,
    HeaderTransform,
    QueryTransform,
    TransformConfig,
)
from turnout.proxy.filters.base import FilterContext, LocalReply
from turnout.proxy.filters.plugin import PluginBase
from turnout.proxy.protocols.heads import Headers, ResponseHead

Getter = Callable[[FilterContext, int], bytes]
Part = bytes | Getter


def _query_value(query: bytes, name: str) -> bytes:
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == name:
            return value.encode("latin-1", "replace")
    return b""


def _claim(ctx: FilterContext, name: str) -> bytes:
    who = ctx.principal
    claims = who.claims if who is not None else None
    value = claims.get(name) if claims else None
    return b"" if value is None else str(value).encode("latin-1", "replace")


def _getter(kind: str, name: str | None) -> Getter:
    if kind == "method":
        return lambda ctx, status: ctx.head.method
    if kind == "path":
        return lambda ctx, status: ctx.head.path
    if kind == "host":
        return lambda ctx, status: ctx.head.authority
    if kind == "client_ip":
        return lambda ctx, status: ctx.client_ip
    if kind == "route":
        return lambda ctx, status: ctx.route.encode()
    if kind == "status":
        return lambda ctx, status: str(status).encode()
    if kind == "consumer":
        return lambda ctx, status: (
            ctx.principal.consumer_key or b"" if ctx.principal is not None else b""
        )
    assert name is not None
    if kind == "header":
        key = name.lower().encode()
        return lambda ctx, status: ctx.head.received.get(key, b"")
    if kind == "query":
        return lambda ctx, status: _query_value(ctx.head.query, name)
    return lambda ctx, status: _claim(ctx, name)


def compile_template(text: str) -> tuple[Part, ...]:
    """Literal runs and getters; ``{{``/``}}`` are literal braces (validated already)."""
    parts: list[Part] = []
    pos = 0
    literal = ""
    while pos < len(text):
        if text.startswith(("{{", "}}"), pos):
            literal += text[pos]
            pos += 2
            continue
        match = PLACEHOLDER.match(text, pos) if text[pos] == "{" else None
        if match is None:
            literal += text[pos]
            pos += 1
            continue
        if literal:
            parts.append(literal.encode("latin-1"))
            literal = ""
        parts.append(_getter(match.group(1), match.group(2)))
        pos = match.end()
    if literal:
        parts.append(literal.encode("latin-1"))
    return tuple(parts)


def render(parts: tuple[Part, ...], ctx: FilterContext, status: int) -> bytes:
    if len(parts) == 1 and isinstance(parts[0], bytes):
        return parts[0]
    return b"".join(p if isinstance(p, bytes) else p(ctx, status) for p in parts)


class HeaderOps:
    __slots__ = ("add", "drop", "rename", "set")

    def __init__(self, spec: HeaderTransform) -> None:
        self.rename = {k.encode(): v.encode() for k, v in spec.rename.items()}
        self.set = [(k.encode(), compile_template(v)) for k, v in spec.set.items()]
        self.add = [(k.encode(), compile_template(v)) for k, v in spec.add.items()]
        self.drop = frozenset({n.encode() for n in spec.remove} | {n for n, _ in self.set})

    def apply(self, headers: Headers, ctx: FilterContext, status: int) -> Headers:
        rename, drop = self.rename, self.drop
        if rename:
            headers = [(rename.get(n, n), v) for n, v in headers]
        if drop:
            headers = [h for h in headers if h[0] not in drop]
        for name, parts in self.set:
            headers.append((name, render(parts, ctx, status)))
        for name, parts in self.add:
            headers.append((name, render(parts, ctx, status)))
        return headers


class QueryOps:
    __slots__ = ("drop", "rename", "set")

    def __init__(self, spec: QueryTransform) -> None:
        self.rename = dict(spec.rename)
        self.set = [(k, compile_template(v)) for k, v in spec.set.items()]
        self.drop = frozenset(spec.remove) | {k for k, _ in self.set}

    def apply(self, ctx: FilterContext) -> bytes:
        pairs = parse_qsl(ctx.head.query.decode("latin-1"), keep_blank_values=True)
        out = [(self.rename.get(k, k), v) for k, v in pairs]
        out = [(k, v) for k, v in out if k not in self.drop]
        out.extend((k, render(parts, ctx, 0).decode("latin-1")) for k, parts in self.set)
        return urlencode(out, quote_via=quote).encode("latin-1")


class TransformPlugin(PluginBase):
    """Registered as the ``transform`` entry point of ``turnout.filters``."""

    config_model = TransformConfig

    def __init__(self, config: TransformConfig) -> None:
        super().__init__(config)
        self._compile(config)

    def reconfigure(self, config: TransformConfig) -> None:
        self.config = config
        self._compile(config)

    def _compile(self, config: TransformConfig) -> None:
        req, resp = config.request, config.response
        self.method = req.method.encode() if req is not None and req.method else None
        self.path: tuple[re.Pattern[bytes], bytes] | None = None
        if req is not None and req.path is not None:
            self.path = (re.compile(req.path.pattern.encode()), req.path.substitution.encode())
        self.query = QueryOps(req.query) if req is not None and req.query is not None else None
        self.headers = (
            HeaderOps(req.headers) if req is not None and req.headers is not None else None
        )
        self.response_headers = (
            HeaderOps(resp.headers) if resp is not None and resp.headers is not None else None
        )

    def on_request(self, ctx: FilterContext) -> LocalReply | None:
        head = ctx.head
        # Templates read the request as received (head.received and the original path).
        if self.headers is not None:
            head.headers = self.headers.apply(head.headers, ctx, 0)
        if self.query is not None:
            head.query = self.query.apply(ctx)
        if self.path is not None:
            pattern, substitution = self.path
            head.path = pattern.sub(substitution, head.path)
        if self.method is not None:
            head.method = self.method
        return None

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        ops = self.response_headers
        if ops is not None:
            head.headers = ops.apply(head.headers, ctx, head.status)
        return None
