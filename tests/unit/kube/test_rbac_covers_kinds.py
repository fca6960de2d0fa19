"""The controller's ClusterRole names every Turnout kind (and its status), no more: a kind
added to the registry without its RBAC would stop controller mode at its first list (403)."""

from __future__ import annotations

from pathlib import Path

import yaml

from turnout.config.crds import turnout_crds

RBAC = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes" / "base" / "rbac.yaml"


def _turnout_rules() -> list[dict[str, object]]:
    role = next(
        doc
        for doc in yaml.safe_load_all(RBAC.read_text())
        if doc and doc.get("kind") == "ClusterRole"
    )
    return [r for r in role["rules"] if r.get("apiGroups") == ["turnout.dev"]]


def test_the_cluster_role_lists_and_watches_every_turnout_kind_and_patches_its_status() -> None:
    plurals = {c["spec"]["names"]["plural"] for c in turnout_crds()}
    rules = _turnout_rules()
    read = {r for rule in rules if "list" in rule["verbs"] for r in rule["resources"]}  # type: ignore[attr-defined]
    status = {r for rule in rules if rule["verbs"] == ["patch"] for r in rule["resources"]}  # type: ignore[attr-defined]
    assert read == plurals
    assert status == {f"{p}/status" for p in plurals}
