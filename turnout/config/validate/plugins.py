"""FilterPlugin checks (the plugin is installed, its configuration validates against the
plugin's own model) and the ``ExtensionRef`` filters of HTTPRoute and GRPCRoute rules
that attach them.

An ExtensionRef to a FilterPlugin that does not exist is a runtime condition in the
Gateway API (the rule answers 500), so it is a warning like a missing backendRef; a
reference to another kind is an error.
"""

from __future__ import annotations

from turnout.config.configset import ConfigSet
from turnout.config.kinds import TURNOUT_GROUP
from turnout.config.model.plugins import PLUGIN_KIND, FilterPluginObject
from turnout.config.model.routes import HTTPRouteObject
from turnout.config.parse import Resource
from turnout.config.plugins import PluginLoadError, load_plugin_class, parse_plugin_config
from turnout.config.problems import Problem


def validate_filter_plugin(res: Resource, obj: FilterPluginObject, problems: list[Problem]) -> None:
    try:
        cls = load_plugin_class(obj.spec.plugin)
        _, found = parse_plugin_config(cls, obj.spec.config)
    except PluginLoadError as exc:
        problems.append(res.problem(("spec", "plugin"), str(exc)))
        return
    for p in found:
        problems.append(res.problem(("spec", "config", *p.path), p.message))


def plugin_names(cs: ConfigSet) -> set[tuple[str, str]]:
    return {
        (r.obj.metadata.namespace, r.obj.metadata.name)
        for r in cs.resources
        if isinstance(r.obj, FilterPluginObject)
    }


def validate_extension_refs(  # a GRPCRoute comes as the HTTPRoute it translates to
    res: Resource,
    route: HTTPRouteObject,
    plugins: set[tuple[str, str]],
    problems: list[Problem],
) -> None:
    ns = route.metadata.namespace
    for r, rule in enumerate(route.spec.rules):
        for f, flt in enumerate(rule.filters):
            ref = flt.extension_ref
            if ref is None:
                continue
            path = ("spec", "rules", r, "filters", f, "extensionRef")
            if ref.group != TURNOUT_GROUP or ref.kind != PLUGIN_KIND:
                problems.append(
                    res.problem(
                        (*path, "kind"),
                        f"unsupported extension {ref.group}/{ref.kind} "
                        f"(use group {TURNOUT_GROUP}, kind {PLUGIN_KIND})",
                    )
                )
            elif (ns, ref.name) not in plugins:
                problems.append(
                    res.problem(
                        (*path, "name"),
                        f"FilterPlugin {ns}/{ref.name} does not exist; requests answer 500",
                        "warning",
                    )
                )
        for b, bref in enumerate(rule.backend_refs):
            for f, flt in enumerate(bref.filters):
                if flt.extension_ref is not None:
                    problems.append(
                        res.problem(
                            ("spec", "rules", r, "backendRefs", b, "filters", f, "type"),
                            "ExtensionRef filters are supported on rules, not on backendRefs",
                        )
                    )
