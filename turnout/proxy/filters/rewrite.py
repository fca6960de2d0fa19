"""``URLRewrite``: change the upstream Host and/or path (the query string is kept)."""

from __future__ import annotations

from turnout.config.model.routes import HTTPPathModifier, HTTPURLRewriteFilter
from turnout.proxy.filters.base import FilterContext, RequestFilter, Verdict
from turnout.proxy.protocols.heads import RequestHead


def replace_prefix(path: bytes, matched: bytes, replacement: bytes) -> bytes:
    """Swap the matched ``PathPrefix`` for ``replacement`` at a segment boundary.

    ``/prefix/one/two`` with prefix ``/prefix/one`` and replacement ``/one`` gives
    ``/one/two``; replacement ``/`` strips the prefix (``/strip/x`` → ``/x``, ``/strip`` → ``/``).
    """
    rest = path if matched == b"/" else path[len(matched) :]
    base = replacement.rstrip(b"/")
    if not rest:
        return base or b"/"
    if rest[:1] != b"/":
        rest = b"/" + rest
    return base + rest


class PathRewriter:
    __slots__ = ("full", "prefix")

    def __init__(self, spec: HTTPPathModifier) -> None:
        self.full = (
            spec.replace_full_path.encode()
            if spec.type == "ReplaceFullPath" and spec.replace_full_path is not None
            else None
        )
        self.prefix = (
            spec.replace_prefix_match.encode()
            if spec.type == "ReplacePrefixMatch" and spec.replace_prefix_match is not None
            else None
        )

    def rewrite(self, path: bytes, matched_prefix: bytes | None) -> bytes:
        if self.full is not None:
            return self.full
        if self.prefix is not None and matched_prefix is not None:
            return replace_prefix(path, matched_prefix, self.prefix)
        return path


class UrlRewrite:
    __slots__ = ("hostname", "path")

    def __init__(self, spec: HTTPURLRewriteFilter) -> None:
        self.hostname = spec.hostname.encode() if spec.hostname else None
        self.path = PathRewriter(spec.path) if spec.path else None

    def apply(self, head: RequestHead, matched_prefix: bytes | None) -> None:
        if self.hostname is not None:
            head.authority = self.hostname
        if self.path is not None:
            head.path = self.path.rewrite(head.path, matched_prefix)


class RewriteFilter(RequestFilter):
    """``URLRewrite`` as a request filter (hostname and path, against the matched prefix)."""

    __slots__ = ("rewrite",)

    def __init__(self, rewrite: UrlRewrite) -> None:
        self.rewrite = rewrite

    def on_request(self, ctx: FilterContext) -> Verdict:
        self.rewrite.apply(ctx.head, ctx.prefix)
        return None
