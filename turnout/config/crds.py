"""CustomResourceDefinitions for Turnout's kinds, generated from the pydantic models.

``turnout crds`` prints them; ``kubectl apply -f -`` installs them. The JSON Schema pydantic
writes is turned into a Kubernetes *structural* schema (apiextensions.k8s.io/v1):

- ``$ref`` is inlined (the API server has no ``$defs``);
- ``Optional[X]`` (``anyOf [X, null]``) becomes ``X`` with ``nullable: true``; an
  ``int | str`` union becomes ``x-kubernetes-int-or-string``; any other union (a
  shorthand accepted beside its long form) keeps ``x-kubernetes-preserve-unknown-fields``
  with no type, and Turnout validates it;
- ``const`` becomes a one-value ``enum``; JSON Schema 2020's numeric
  ``exclusiveMinimum``/``Maximum`` become OpenAPI 3.0's boolean form;
- ``additionalProperties: false`` is dropped (Kubernetes prunes unknown fields instead),
  and so are ``pattern`` (Python regular expressions are not RE2), ``format``,
  ``default``, ``uniqueItems`` (Kubernetes forbids it) and titles: Turnout applies its own
  defaults and checks the rest, and reports what it refuses in the log and status.

What the API server then refuses by itself (422): wrong types, missing required fields,
values outside an enum or a numeric range, too many items. Each CRD has the status
subresource and printer columns for ``Accepted`` and age.
"""

from __future__ import annotations

from typing import Any

from turnout.config.kinds import KINDS as REGISTRY
from turnout.config.kinds import TURNOUT_GROUP, KindEntry
from turnout.config.model import KINDS

_DROP = frozenset(
    {
        "title",
        "$defs",
        "default",
        "pattern",
        "format",
        "discriminator",
        "examples",
        "$schema",
        "uniqueItems",
        "propertyNames",
        "readOnly",
        "writeOnly",
        "deprecated",
        "patternProperties",
    }
)


def _resolve(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(node, list):
        return [_resolve(v, defs, seen) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        if name in seen:  # a recursive model: leave that level open
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs, (*seen, name))
    return {k: _resolve(v, defs, seen) for k, v in node.items()}


def structural(node: Any) -> Any:
    """A structural schema node for a resolved JSON Schema node."""
    if isinstance(node, list):
        return [structural(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "prefixItems":
            out["items"] = {"x-kubernetes-preserve-unknown-fields": True}
        elif key == "properties":
            out["properties"] = {k: structural(v) for k, v in value.items()}
        elif key in ("anyOf", "oneOf"):
            out.update(_union(value))
        else:
            out[key] = structural(value)
    if "enum" in out and "type" not in out:
        out["type"] = _type_of(out["enum"][0])
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    if "additionalProperties" in out and "properties" in out:
        del out["additionalProperties"]  # Kubernetes refuses the two together
    if "type" not in out and not _open(out):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _open(node: dict[str, Any]) -> bool:
    return bool(
        node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    )


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _union(branches: list[Any]) -> dict[str, Any]:
    options = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
    nullable = len(options) != len(branches)
    out: dict[str, Any]
    if len(options) == 1:
        out = structural(options[0])
    elif {o.get("type") for o in options if isinstance(o, dict)} == {"integer", "string"}:
        out = {"x-kubernetes-int-or-string": True}
    else:
        types = {o.get("type") for o in options if isinstance(o, dict)}
        if len(types) == 1 and None not in types:
            out = {"type": types.pop(), "x-kubernetes-preserve-unknown-fields": True}
        else:
            out = {"x-kubernetes-preserve-unknown-fields": True}
    if nullable:
        out["nullable"] = True
    return out


def spec_schema(entry: KindEntry) -> dict[str, Any]:
    schema = KINDS[entry.kind].model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve(schema, schema.get("$defs", {}))
    spec = resolved.get("properties", {}).get("spec")
    if spec is None:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    out = structural(spec)
    out.pop("nullable", None)
    out.pop("description", None)
    return dict(out)


def crd(entry: KindEntry) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "spec": spec_schema(entry),
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    if "spec" in KINDS[entry.kind].model_json_schema(by_alias=True).get("required", []):
        schema["required"] = ["spec"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{entry.plural}.{entry.group}"},
        "spec": {
            "group": entry.group,
            "names": {
                "kind": entry.kind,
                "listKind": f"{entry.kind}List",
                "plural": entry.plural,
                "singular": entry.kind.lower(),
                **({"shortNames": list(entry.short_names)} if entry.short_names else {}),
                "categories": ["turnout"],
            },
            "scope": "Namespaced" if entry.namespaced else "Cluster",
            "versions": [
                {
                    "name": entry.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Accepted",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Accepted")].status',
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def turnout_crds() -> list[dict[str, Any]]:
    """One CRD per Turnout kind, in registry order."""
    return [crd(e) for e in REGISTRY.values() if e.group == TURNOUT_GROUP]
