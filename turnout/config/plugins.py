"""Finding filter plugins: entry points of the ``turnout.filters`` group.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."turnout.filters"]
    request-signing = "turnout_request_signing:SigningPlugin"

and a ``FilterPlugin`` object names it (``spec.plugin: request-signing``). The class is
loaded on first use and kept (a package installed later is found on the next lookup;
an upgrade needs a restart, as any Python code does). Its ``config_model`` (a pydantic
model, optional) validates ``spec.config``; errors keep the path inside ``config`` so
they are reported at the file, line and field they come from.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Final

from pydantic import BaseModel, ValidationError

ENTRY_POINT_GROUP: Final = "turnout.filters"

_LOADED: dict[str, type[Any]] = {}


class PluginLoadError(LookupError):
    """The named plugin is not installed or its entry point does not load."""


def installed_plugins() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_plugin_class(name: str) -> type[Any]:
    cls = _LOADED.get(name)
    if cls is not None:
        return cls
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        known = ", ".join(installed_plugins()) or "none"
        raise PluginLoadError(
            f"no plugin {name!r} is installed (entry points of group {ENTRY_POINT_GROUP!r}: "
            f"{known})"
        )
    try:
        loaded = found[0].load()
    except Exception as exc:  # third-party import: anything can go wrong
        raise PluginLoadError(f"plugin {name!r} failed to load: {exc!r}") from exc
    if not isinstance(loaded, type):
        raise PluginLoadError(f"plugin {name!r}: entry point {found[0].value} is not a class")
    _LOADED[name] = loaded
    return loaded


def config_model(cls: type[Any]) -> type[BaseModel] | None:
    model = getattr(cls, "config_model", None)
    if model is None:
        return None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginLoadError(f"{cls.__qualname__}.config_model is not a pydantic model")
    return model


class ConfigProblem:
    """One error in a plugin's configuration: a path below ``spec.config`` and a message."""

    __slots__ = ("message", "path")

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        self.path = path
        self.message = message


def parse_plugin_config(cls: type[Any], raw: dict[str, Any]) -> tuple[Any, list[ConfigProblem]]:
    """The plugin's config object (None for a plugin without a model) and the problems."""
    model = config_model(cls)
    if model is None:
        if raw:
            return None, [ConfigProblem((), "this plugin takes no configuration")]
        return None, []
    try:
        return model.model_validate(raw), []
    except ValidationError as exc:
        return None, [
            ConfigProblem(tuple(e["loc"]), e["msg"]) for e in exc.errors(include_url=False)
        ]
