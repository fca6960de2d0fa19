"""Python filter plugins on the request path: the base class plugins derive from and the
filters that run them safely.

A plugin (``turnout.plugins.Plugin``, this module's ``PluginBase``) has two hooks:

* ``on_request(ctx)`` → ``None`` (go on) or a ``LocalReply``. Declared ``async def``, it
  may await call-outs; it then runs as the filter chain's ``Suspend`` decision, bounded
  by the FilterPlugin's ``timeout`` (the context cancels it when the client leaves).
* ``on_response(ctx, head)`` → ``None`` or a ``LocalReply``; synchronous (the response
  head is on its way).

``PluginRequestFilter`` / ``PluginResponseFilter`` wrap one attachment of a plugin (an
``ExtensionRef`` in a rule). They are the only place a plugin's code is called per
request, and they contain it: an exception, a timeout or a verdict of the wrong type is
counted (``WorkerStats.plugin_failures`` → ``turnout_plugin_failures_total``), logged
(the first, second, fourth, ... of each kind, so a broken plugin cannot flood the log),
and answered with the FilterPlugin's ``failureStatus`` — or ignored with ``failOpen``.
Nothing a plugin raises (short of ``BaseException``) leaves the wrapper, so a plugin
never takes a worker down. Whether the hook is a coroutine function is decided once, at
snapshot build; a plugin without ``on_response`` gets no response filter at all.

These classes satisfy the hooks protocols of ``filters.base`` and are wrapped once, at
build time, by ``request_filter``/``response_filter``: they stay interpreted Python (a
compiled data plane's base classes cannot be subclassed by interpreted ones), as plugins
themselves are.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar

from turnout.observe.stats import WorkerStats
from turnout.proxy.filters.base import FilterContext, LocalReply, Suspend, Verdict
from turnout.proxy.protocols.heads import ResponseHead

log = logging.getLogger("turnout.plugins")


class PluginBase:
    """What every plugin derives from (published as ``turnout.plugins.Plugin``).

    ``config_model``: a pydantic model for ``spec.config`` (validated when the
    configuration is loaded, errors located in the manifest); ``self.config`` is the
    validated instance. ``__init__`` must do no I/O (configuration checks construct
    plugins too); open clients in ``setup``.
    """

    config_model: ClassVar[type[Any] | None] = None

    def __init__(self, config: Any) -> None:
        self.config = config

    def setup(self) -> Awaitable[None] | None:
        """Once per worker, before the first request (may be ``async def``)."""
        return None

    def reconfigure(self, config: Any) -> None:
        """A reload changed ``spec.config``: the new validated config (the instance, its
        clients and state are kept)."""
        self.config = config

    def close(self) -> Awaitable[None] | None:
        """When no revision uses the plugin any more, or the worker drains."""
        return None

    def on_request(self, ctx: FilterContext) -> Any:
        """Per request; ``None`` goes on, a ``LocalReply`` answers (may be ``async def``)."""
        return None

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        """Per response head, before it goes downstream; modify ``head.headers`` in place."""
        return None


class _Failure:
    __slots__ = ("error", "reason")

    def __init__(self, reason: str, error: BaseException | None) -> None:
        self.reason = reason
        self.error = error


class PluginFailures:
    """One FilterPlugin's failure policy and its counters (shared by its attachments)."""

    __slots__ = ("fail_open", "label", "replies", "stats", "status")

    def __init__(self, label: str, fail_open: bool, status: int, stats: WorkerStats) -> None:
        self.label = label
        self.fail_open = fail_open
        self.status = status
        self.stats = stats
        self.replies = {
            "error": LocalReply(status, b"plugin_error", b"the request could not be processed"),
            "timeout": LocalReply(status, b"plugin_timeout", b"a plugin did not answer in time"),
            "verdict": LocalReply(status, b"plugin_error", b"the request could not be processed"),
        }

    def failed(self, reason: str, error: BaseException | None, hook: str) -> LocalReply | None:
        n = self.stats.plugin_failure(self.label, reason)
        if n & (n - 1) == 0:  # 1st, 2nd, 4th, 8th, ...: visible, never a flood
            log.error(
                "plugin %s: %s in %s (%d so far in this worker)%s",
                self.label,
                reason,
                hook,
                n,
                "; failing open" if self.fail_open else "",
                exc_info=error if isinstance(error, Exception) else None,
            )
        return None if self.fail_open else self.replies[reason]


class PluginRequestFilter:
    __slots__ = ("failures", "hook", "is_async", "timeout")

    def __init__(
        self,
        hook: Callable[[FilterContext], Any],
        failures: PluginFailures,
        timeout: float,
    ) -> None:
        self.hook = hook
        self.is_async = inspect.iscoroutinefunction(hook)
        self.failures = failures
        self.timeout = timeout

    def on_request(self, ctx: FilterContext) -> Verdict:
        try:
            result = self.hook(ctx)
        except Exception as exc:
            return self.failures.failed("error", exc, "on_request")
        if self.is_async:
            return Suspend(self._bounded(result))
        if result is None or isinstance(result, LocalReply):
            return result
        return self.failures.failed("verdict", TypeError(f"returned {result!r}"), "on_request")

    async def _bounded(self, call: Coroutine[Any, Any, object]) -> object:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError as exc:
            return _Failure("timeout", exc)
        except Exception as exc:
            return _Failure("error", exc)

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        if outcome is None or isinstance(outcome, LocalReply):
            return outcome
        if isinstance(outcome, _Failure):
            return self.failures.failed(outcome.reason, outcome.error, "on_request")
        return self.failures.failed("verdict", TypeError(f"returned {outcome!r}"), "on_request")

    def __repr__(self) -> str:
        return f"<PluginRequestFilter {self.failures.label}>"


class PluginResponseFilter:
    __slots__ = ("failures", "hook")

    def __init__(
        self, hook: Callable[[FilterContext, ResponseHead], Any], failures: PluginFailures
    ) -> None:
        self.hook = hook
        self.failures = failures

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        try:
            result = self.hook(ctx, head)
        except Exception as exc:
            return self.failures.failed("error", exc, "on_response")
        if result is None or isinstance(result, LocalReply):
            return result
        return self.failures.failed("verdict", TypeError(f"returned {result!r}"), "on_response")

    def __repr__(self) -> str:
        return f"<PluginResponseFilter {self.failures.label}>"


class MissingPluginFilter:
    """An ExtensionRef to a FilterPlugin that does not exist: the rule answers 500, as
    the Gateway API asks of an unresolved filter reference."""

    __slots__ = ("reply",)

    def __init__(self, name: str) -> None:
        self.reply = LocalReply(
            500, b"plugin_not_found", f"filter plugin {name} does not exist".encode()
        )

    def on_request(self, ctx: FilterContext) -> Verdict:
        return self.reply

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        return None


def overrides(plugin: object, hook: str) -> bool:
    """Whether ``plugin`` implements ``hook`` itself (a base-class no-op costs nothing)."""
    mine = getattr(type(plugin), hook, None)
    return mine is not None and mine is not getattr(PluginBase, hook)
