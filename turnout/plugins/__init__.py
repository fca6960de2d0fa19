"""The plugin SDK: write request/response filters in Python, ship them as packages.

A plugin is a class deriving from ``Plugin`` with a pydantic ``config_model``::

    from pydantic import BaseModel
    from turnout.plugins import Context, LocalReply, Plugin, set_header

    class Config(BaseModel):
        header: str = "x-hello"

    class Hello(Plugin[Config]):
        config_model = Config

        def on_request(self, ctx: Context) -> LocalReply | None:
            set_header(ctx, self.config.header, "world")
            return None

registered as an entry point of the ``turnout.filters`` group (``ENTRY_POINT_GROUP``),
configured by a ``FilterPlugin`` object (``turnout.dev/v1alpha1``) and attached to
HTTPRoute/GRPCRoute rules with an ``ExtensionRef`` filter. See docs/plugins.md.

What this module publishes is the data plane's own filter interface
(``turnout.proxy.filters``): a plugin runs exactly like a built-in filter, in-process,
with the same per-request context. ``turnout.testing.plugins.PluginHarness`` runs one
without sockets.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from turnout.config.plugins import ENTRY_POINT_GROUP
from turnout.proxy.filters.auth.chain import Principal
from turnout.proxy.filters.base import FilterContext, LocalReply
from turnout.proxy.filters.plugin import PluginBase
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead

ConfigT = TypeVar("ConfigT")

# The per-request context a hook gets: ``head`` (the request: ``method``, ``path``,
# ``query``, ``headers`` as lowercase-bytes pairs), ``route``, ``backend``,
# ``principal``, ``client_ip``, ``values()`` (per-request dict), ``add_response_headers``.
Context = FilterContext


class Plugin(PluginBase, Generic[ConfigT]):
    """Base class of a filter plugin; ``ConfigT`` is its ``config_model``.

    Hooks (override the ones you need; an absent hook costs nothing per request):

    - ``on_request(ctx) -> LocalReply | None`` — may be ``async def`` to await
      call-outs; bounded by the FilterPlugin's ``timeout``.
    - ``on_response(ctx, head) -> LocalReply | None`` — synchronous; modify
      ``head.headers`` in place.

    Lifecycle, per worker process: ``__init__(config)`` (no I/O: configuration checks
    construct plugins too), ``setup()`` once before the first request,
    ``reconfigure(config)`` when a reload changes ``spec.config``, ``close()`` when no
    revision uses it or the worker drains. ``setup`` and ``close`` may be ``async``.

    One instance serves every request of every rule that attaches it, concurrently: keep
    per-request values in ``ctx.values()``, never on ``self``. An exception or a timeout
    answers the FilterPlugin's ``failureStatus`` (500) or, with ``failOpen``, lets the
    request through; either way it is counted in ``turnout_plugin_failures_total``.
    """

    config: ConfigT

    def __init__(self, config: ConfigT) -> None:
        super().__init__(config)


# -- small helpers for hooks (bytes in the head; these take str for convenience) ---------


def header(ctx: FilterContext, name: str) -> str | None:
    """The request header ``name`` as received (repeated values joined by ","), or None."""
    value = ctx.head.received.get(name.lower().encode())
    return None if value is None else value.decode("latin-1")


def set_header(ctx: FilterContext, name: str, value: str) -> None:
    """Replace every value of request header ``name`` with ``value``."""
    key = name.lower().encode()
    head = ctx.head
    head.headers = [h for h in head.headers if h[0] != key]
    head.headers.append((key, value.encode("latin-1")))


def remove_header(ctx: FilterContext, name: str) -> None:
    key = name.lower().encode()
    ctx.head.headers = [h for h in ctx.head.headers if h[0] != key]


def set_response_header(head: ResponseHead, name: str, value: str) -> None:
    key = name.lower().encode()
    head.headers[:] = [h for h in head.headers if h[0] != key]
    head.headers.append((key, value.encode("latin-1")))


def reply(
    status: int, code: str = "", message: str = "", headers: Headers | None = None
) -> LocalReply:
    """A ``LocalReply``: ``code`` non-empty gives the JSON error body
    ``{"error": code, "message": message, "request_id": ...}``."""
    return LocalReply(status, code.encode(), message.encode(), headers)


__all__ = [
    "ENTRY_POINT_GROUP",
    "Context",
    "Headers",
    "LocalReply",
    "Plugin",
    "Principal",
    "RequestHead",
    "ResponseHead",
    "header",
    "remove_header",
    "reply",
    "set_header",
    "set_response_header",
]
