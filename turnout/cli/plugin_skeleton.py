"""The package ``turnout plugin new NAME`` writes (nothing here imports the data plane).

NAME/pyproject.toml            entry point  NAME = "turnout_NAME:Plugin class"
NAME/src/turnout_NAME/__init__.py   the plugin, with a pydantic config model
NAME/tests/test_NAME.py        a harness test (turnout.testing.plugins), no sockets
NAME/filterplugin.yaml         a FilterPlugin and the ExtensionRef that attaches it
"""

from __future__ import annotations

import re
from pathlib import Path

from turnout.cli.errors import CliError

_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "turnout-{name}"
version = "0.1.0"
description = "Turnout filter plugin {name}"
requires-python = ">=3.11"
dependencies = ["turnout"]

[project.entry-points."turnout.filters"]
{name} = "{module}:{cls}"
"""

_MODULE = '''\
"""The {name} filter plugin: adds a request header (edit to taste; docs/plugins.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from turnout.plugins import Context, LocalReply, Plugin, ResponseHead, set_header


class {cls}Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    header: str = Field(default="x-{name}", min_length=1)
    value: str = "on"


class {cls}(Plugin[{cls}Config]):
    config_model = {cls}Config

    def on_request(self, ctx: Context) -> LocalReply | None:
        set_header(ctx, self.config.header, self.config.value)
        return None

    def on_response(self, ctx: Context, head: ResponseHead) -> LocalReply | None:
        return None
'''

_TEST = '''\
"""Unit tests of the {name} plugin: no sockets, no gateway."""

from __future__ import annotations

import asyncio

import pytest

from turnout.testing.plugins import PluginConfigError, PluginHarness
from {module} import {cls}


def test_sets_the_header() -> None:
    async def main() -> None:
        async with PluginHarness({cls}, {{"value": "yes"}}) as h:
            out = await h.request("GET", "/")
            assert out.forwarded
            assert out.header("x-{name}") == "yes"

    asyncio.run(main())


def test_bad_config_is_refused() -> None:
    with pytest.raises(PluginConfigError):
        PluginHarness({cls}, {{"header": ""}})
'''

_MANIFEST = """\
apiVersion: turnout.dev/v1alpha1
kind: FilterPlugin
metadata: {{name: {name}}}
spec:
  plugin: {name}
  config: {{value: "on"}}
  timeout: 1s
# attach it in an HTTPRoute or GRPCRoute rule:
#   filters:
#   - type: ExtensionRef
#     extensionRef: {{group: turnout.dev, kind: FilterPlugin, name: {name}}}
"""


def create(name: str, directory: str) -> Path:
    if not _NAME.fullmatch(name):
        raise CliError(
            f"{name!r} is not a plugin name: lowercase letters and digits, words joined by '-'"
        )
    root = Path(directory) / name
    if root.exists():
        raise CliError(f"{root} already exists")
    module = "turnout_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + "Plugin"
    values = {"name": name, "module": module, "cls": cls}
    files = {
        root / "pyproject.toml": _PYPROJECT,
        root / "src" / module / "__init__.py": _MODULE,
        root / "tests" / f"test_{module}.py": _TEST,
        root / "filterplugin.yaml": _MANIFEST,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    return root
