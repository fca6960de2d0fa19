"""The ``FilterPlugin`` kind (turnout.dev): one configured instance of a Python filter plugin.

``spec.plugin`` names an entry point of the ``turnout.filters`` group (an installed
package); ``spec.config`` is handed to that plugin's own pydantic model, so it is checked
by ``config.validate.plugins`` (which loads the entry point), not here. HTTPRoute and
GRPCRoute rules attach it with a standard ``ExtensionRef`` filter::

    filters:
    - type: ExtensionRef
      extensionRef: {group: turnout.dev, kind: FilterPlugin, name: sign}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from turnout.config.model.base import Duration, ObjectMeta, Spec

PLUGIN_KIND = "FilterPlugin"


class FilterPluginSpec(Spec):
    # The entry point's name in the ``turnout.filters`` group.
    plugin: Annotated[StrictStr, Field(min_length=1, max_length=253)]
    config: dict[StrictStr, Any] = Field(default_factory=dict)
    # Bounds an asynchronous hook (``async def on_request``); a synchronous hook cannot be
    # interrupted and is not bounded.
    timeout: Duration = "1s"
    # On an exception or a timeout: answer ``failureStatus`` (closed) or let the request
    # go on as if the plugin had not been there (open). Counted either way.
    fail_open: StrictBool = False
    failure_status: Annotated[StrictInt, Field(ge=400, le=599)] = 500


class FilterPluginObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["FilterPlugin"]
    metadata: ObjectMeta
    spec: FilterPluginSpec
    status: dict[str, Any] | None = None
