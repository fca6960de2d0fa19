"""A worker's filter plugin instances and their lifecycle.

Each worker holds one instance per ``FilterPlugin`` object, shared by every rule that
attaches it. A revision is applied in two steps, so a revision that fails leaves the
running plugins untouched:

1. ``stage`` (during the snapshot build): the plugin class is loaded from its entry
   point and ``spec.config`` validated with its model. An object whose plugin class is
   unchanged keeps its live instance (a changed config is remembered for step 2); a new
   object, or one naming another plugin, gets a fresh instance (``__init__`` only).
2. ``commit`` (after the build, before the snapshot is installed): fresh instances are
   ``setup()`` (awaited when a coroutine), changed ones ``reconfigure(config)``d, and
   instances no revision uses any more are ``close()``d. A ``setup`` that raises fails
   the revision (the error names the FilterPlugin); the worker keeps its old snapshot.

``close_all`` runs when the worker drains. The supervisor's trial build stages into a
scratch host that it never commits: plugins are constructed, never set up.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from turnout.config.configset import ConfigSet
from turnout.config.model.plugins import FilterPluginObject, FilterPluginSpec
from turnout.config.plugins import PluginLoadError, load_plugin_class, parse_plugin_config
from turnout.config.problems import ConfigError, Problem
from turnout.core.durations import parse_duration
from turnout.observe.stats import WorkerStats
from turnout.proxy.filters.base import (
    RequestFilter,
    ResponseFilter,
    request_filter,
    response_filter,
)
from turnout.proxy.filters.plugin import (
    PluginFailures,
    PluginRequestFilter,
    PluginResponseFilter,
    overrides,
)

log = logging.getLogger("turnout.plugins")

Key = tuple[str, str]


class PluginSetupError(ConfigError):
    """A plugin could not be loaded, configured or set up; located like a config error."""


class LoadedPlugin:
    """One FilterPlugin object's instance, its spec and validated config."""

    __slots__ = ("config", "failures", "fresh", "instance", "label", "reconfigured", "spec")

    def __init__(
        self,
        label: str,
        instance: Any,
        spec: FilterPluginSpec,
        config: Any,
        failures: PluginFailures,
    ) -> None:
        self.label = label
        self.instance = instance
        self.spec = spec
        self.config = config
        self.failures = failures
        self.fresh = True  # needs setup() at commit
        self.reconfigured = False  # needs reconfigure(config) at commit

    def filters(self) -> tuple[RequestFilter | None, ResponseFilter | None]:
        """The filters of one attachment (None for a hook the plugin does not have)."""
        inst = self.instance
        request = None
        if overrides(inst, "on_request"):
            request = request_filter(
                PluginRequestFilter(
                    inst.on_request, self.failures, parse_duration(self.spec.timeout)
                )
            )
        response = None
        if overrides(inst, "on_response"):
            response = response_filter(PluginResponseFilter(inst.on_response, self.failures))
        return request, response


class PluginHost:
    __slots__ = ("live", "staged", "stats")

    def __init__(self, stats: WorkerStats) -> None:
        self.stats = stats
        self.live: dict[Key, LoadedPlugin] = {}
        self.staged: dict[Key, LoadedPlugin] | None = None

    def stage(self, config: ConfigSet) -> dict[Key, LoadedPlugin]:
        staged: dict[Key, LoadedPlugin] = {}
        problems: list[Problem] = []
        for res in config.resources:
            obj = res.obj
            if not isinstance(obj, FilterPluginObject):
                continue
            key = (obj.metadata.namespace, obj.metadata.name)
            label = f"{key[0]}/{key[1]}"
            spec = obj.spec
            try:
                cls = load_plugin_class(spec.plugin)
                parsed, found = parse_plugin_config(cls, spec.config)
            except PluginLoadError as exc:
                problems.append(res.problem(("spec", "plugin"), str(exc)))
                continue
            if found:
                problems.extend(res.problem(("spec", "config", *p.path), p.message) for p in found)
                continue
            failures = PluginFailures(label, spec.fail_open, spec.failure_status, self.stats)
            old = self.live.get(key)
            if old is not None and type(old.instance) is cls:
                loaded = LoadedPlugin(label, old.instance, spec, parsed, failures)
                loaded.fresh = False
                loaded.reconfigured = old.spec.config != spec.config
            else:
                try:
                    instance = cls(parsed)
                except Exception as exc:
                    problems.append(res.problem(("spec", "plugin"), f"cannot construct: {exc!r}"))
                    continue
                loaded = LoadedPlugin(label, instance, spec, parsed, failures)
            staged[key] = loaded
        if problems:
            raise PluginSetupError(problems)
        self.staged = staged
        return staged

    async def commit(self) -> None:
        """Set up, reconfigure and close, then make the staged plugins the live ones."""
        staged = self.staged
        if staged is None:
            return
        self.staged = None
        started: list[LoadedPlugin] = []
        for loaded in staged.values():
            try:
                if loaded.fresh:
                    await _maybe_await(loaded.instance.setup())
                    started.append(loaded)
                elif loaded.reconfigured:
                    loaded.instance.reconfigure(loaded.config)
            except Exception as exc:
                for done in started:
                    await _close(done)
                what = "setup" if loaded.fresh else "reconfigure"
                raise PluginSetupError(
                    [Problem("plugin", None, None, "", f"{loaded.label}: {what} failed: {exc!r}")]
                ) from exc
        kept = {id(p.instance) for p in staged.values()}
        for old in self.live.values():
            if id(old.instance) not in kept:
                await _close(old)
        self.live = staged

    async def close_all(self) -> None:
        live, self.live = self.live, {}
        for loaded in live.values():
            await _close(loaded)


async def _maybe_await(result: object) -> None:
    if inspect.isawaitable(result):
        await result


async def _close(loaded: LoadedPlugin) -> None:
    try:
        await _maybe_await(loaded.instance.close())
    except Exception:
        log.exception("plugin %s: close failed", loaded.label)
