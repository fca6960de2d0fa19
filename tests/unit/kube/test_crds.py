"""``turnout crds``: structural schemas generated from the models."""

from __future__ import annotations

from typing import Any

from turnout.config.crds import structural, turnout_crds


def _walk(node: Any, path: str = "") -> list[str]:
    """Paths breaking the structural-schema rules the API server enforces."""
    bad: list[str] = []
    if isinstance(node, dict):
        for key in (
            "anyOf",
            "oneOf",
            "allOf",
            "$ref",
            "const",
            "uniqueItems",
            "additionalProperties",
        ):
            if key in node and not (key == "additionalProperties" and "properties" not in node):
                bad.append(f"{path}.{key}")
        open_ = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        if "type" not in node and not open_:
            bad.append(f"{path}: no type")
        for key, value in (node.get("properties") or {}).items():
            bad += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            bad += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            bad += _walk(node["additionalProperties"], f"{path}{{}}")
    return bad


def test_every_schema_is_structural_with_status_and_columns() -> None:
    crds = turnout_crds()
    kinds = [c["spec"]["names"]["kind"] for c in crds]
    assert "Backend" in kinds and "TrafficPolicy" in kinds
    for crd in crds:
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        assert _walk(schema) == [], crd["metadata"]["name"]
        assert version["subresources"] == {"status": {}}
        assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Accepted", "Age"]
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.turnout.dev"


def test_unions_and_json_schema_2020_forms_become_openapi_3_0() -> None:
    node = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "b": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "c": {"const": "x"},
            "d": {"type": "integer", "exclusiveMinimum": 0},
            "e": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {}}]},
        },
    }
    out = structural(node)
    assert "additionalProperties" not in out
    p = out["properties"]
    assert p["a"] == {"type": "string", "nullable": True}
    assert p["b"] == {"x-kubernetes-int-or-string": True}
    assert p["c"] == {"enum": ["x"], "type": "string"}
    assert p["d"] == {"type": "integer", "minimum": 0, "exclusiveMinimum": True}
    assert p["e"] == {"x-kubernetes-preserve-unknown-fields": True}
