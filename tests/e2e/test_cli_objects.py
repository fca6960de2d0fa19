"""``apply``, ``get``, ``describe``, ``diff`` and ``delete`` against a real server.

Each test uses its own object names or namespace, so they share one server.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import EchoFactory
from tests.e2e.conftest import Cli
from turnout.config.kinds import REGISTRY
from turnout.testing.manifests import backend, dump, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import Reply, get

ROUTE_FILE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: objects
  labels: {app: shop}
spec:
  hostnames: [shop.example.com]
  parentRefs: [{name: gw, namespace: default}]
  rules:
  - backendRefs:
    - {name: shop, port: 8080}
"""
BACKEND_FILE = """\
apiVersion: turnout.dev/v1alpha1
kind: Backend
metadata: {name: shop, namespace: objects, labels: {app: shop}}
spec:
  endpoints: [{address: "127.0.0.1:9"}, {address: "127.0.0.1:10"}]
"""


def _manifests(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "10-backend.yaml").write_text(BACKEND_FILE)
    (d / "20-route.yaml").write_text(ROUTE_FILE)
    (d / "README.md").write_text("not a manifest")
    return d


def test_apply_reports_created_configured_unchanged(cli: Cli, tmp_path: Path) -> None:
    d = _manifests(tmp_path)
    out = cli.ok("apply", "-f", str(d), "-m", "shop v1")
    assert out.splitlines() == [
        "backend.turnout.dev/shop created",
        "httproute.gateway.networking.k8s.io/shop created",
    ]
    assert cli.ok("apply", "-f", str(d)).splitlines() == [
        "backend.turnout.dev/shop unchanged",
        "httproute.gateway.networking.k8s.io/shop unchanged",
    ]
    (d / "20-route.yaml").write_text(ROUTE_FILE.replace("shop.example.com", "www.example.com"))
    out = cli.ok("apply", "-f", str(d / "10-backend.yaml"), "-f", str(d / "20-route.yaml"))
    assert out.splitlines()[1] == "httproute.gateway.networking.k8s.io/shop configured"

    table = cli.ok("get", "httproutes", "-n", "objects").splitlines()
    assert table[0].split() == ["NAME", "HOSTNAMES", "PARENTS", "BACKENDS", "AGE"]
    assert table[1].split()[:4] == ["shop", "www.example.com", "default/gw", "shop:8080"]
    backends = cli.ok("get", "be", "-n", "objects").splitlines()
    assert backends[1].split()[:2] == ["shop", "127.0.0.1:9,127.0.0.1:10"]


def test_apply_from_stdin_and_dry_run(cli: Cli) -> None:
    text = dump(backend("stdin-be", 9, namespace="objects"))
    out = cli.ok("apply", "-f", "-", "--dry-run", input=text)
    assert out == "backend.turnout.dev/stdin-be created (dry run)\n"
    missing = cli("get", "backend", "stdin-be", "-n", "objects")
    assert missing.code == 1
    assert missing.err == "error: Backend objects/stdin-be not found\n"
    assert cli.ok("apply", "-f", "-", input=text) == "backend.turnout.dev/stdin-be created\n"
    assert cli.ok("get", "backend", "stdin-be", "-n", "objects", "-o", "name") == (
        "backend.turnout.dev/stdin-be\n"
    )


def test_applied_routes_are_served(cli: Cli, echo: EchoFactory) -> None:
    upstream = echo("served-0")
    gw = json.loads(cli.ok("get", "gateway", "gw", "-o", "json"))
    port = gw["spec"]["listeners"][0]["port"]
    manifests = dump(
        backend("served", upstream.port),
        route("served", [to("served", "/served")], hostnames=["served.example"]),
    )
    cli.ok("apply", "-f", "-", input=manifests)

    def served() -> Reply | None:
        reply = get(port, "/served/x", {"Host": "served.example"}, timeout=5)
        return reply if reply.status == 200 else None

    reply = wait_until(served, 10, "the applied route to serve")
    assert reply.json()["pod"] == "served-0"
    described = cli.ok("describe", "route", "served")
    assert "Programmed     True" in described


def test_validation_problems_name_file_line_and_field(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(dump(backend("valid-one", 9, namespace="objects")))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "# comment\n"
        "apiVersion: turnout.dev/v1alpha1\n"
        "kind: Backend\n"
        "metadata: {name: invalid, namespace: objects}\n"
        "spec:\n"
        "  endpoints:\n"
        "  - {address: '127.0.0.1:9', weight: -1}\n"
    )
    run = cli("apply", "-f", str(good), "-f", str(bad))
    assert run.code == 1
    assert run.out == ""
    lines = run.err.splitlines()
    assert lines[0] == (
        f"{bad}:7:30: Backend objects/invalid: spec.endpoints[0].weight: "
        "Input should be greater than or equal to 0"
    )
    assert lines[-1] == "error: 1 validation error(s); nothing was changed"
    assert "Traceback" not in run.err
    # atomic: the valid object in the same request was not stored either
    assert cli("get", "backend", "valid-one", "-n", "objects").code == 1


def test_yaml_syntax_errors_are_reported_locally(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("kind: Backend\nmetadata: {name: x\n")
    run = cli("apply", "-f", str(bad))
    assert run.code == 1
    assert run.err.startswith(f"error: {bad}:3:1: invalid YAML: ")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    run = cli("apply", "-f", str(empty))
    assert (run.code, run.err) == (1, f"error: no objects passed: {empty} holds no manifests\n")


def test_get_output_formats(cli: Cli, tmp_path: Path) -> None:
    cli.ok(
        "apply",
        "-f",
        "-",
        input=dump(
            backend("fmt-a", 9, namespace="formats"),
            backend("fmt-b", 10, namespace="formats"),
        ),
    )
    one = yaml.safe_load(cli.ok("get", "backend", "fmt-a", "-n", "formats", "-o", "yaml"))
    assert one["kind"] == "Backend" and one["metadata"]["name"] == "fmt-a"
    assert one["metadata"]["annotations"]["turnout.dev/owner"] == "api"
    listed = json.loads(cli.ok("get", "backends", "-n", "formats", "-o", "json"))
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["fmt-a", "fmt-b"]
    wide = cli.ok("get", "Backend", "-n", "formats", "-o", "wide").splitlines()
    assert wide[0].split() == [
        "NAME",
        "ENDPOINTS",
        "HEALTH",
        "BALANCER",
        "PROTOCOL",
        "AGE",
        "CONDITIONS",
        "OWNER",
        "REVISION",
    ]
    row = wide[1].split()
    assert row[:5] == ["fmt-a", "127.0.0.1:9", "-", "RoundRobin", "http"]
    assert row[6] == "Accepted,ResolvedRefs,Programmed" and row[7] == "api"
    assert row[8] == one["metadata"]["resourceVersion"]
    every = cli.ok("get", "backends.turnout.dev", "-A").splitlines()
    assert every[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert next(r.split()[:2] for r in every if "fmt-b" in r) == ["formats", "fmt-b"]
    by_ref = cli.ok("get", "be/fmt-a", "backend/fmt-b", "-n", "formats", "-o", "name")
    assert by_ref == "backend.turnout.dev/fmt-a\nbackend.turnout.dev/fmt-b\n"
    nothing = cli("get", "routes", "-n", "formats")
    assert (nothing.code, nothing.out, nothing.err) == (
        0,
        "",
        "No resources found in formats namespace.\n",
    )
    several = cli.ok("get", "gateways,backends", "-n", "formats")
    assert "backend.turnout.dev/fmt-a" in several


def test_yaml_output_applies_back_unchanged(cli: Cli, tmp_path: Path) -> None:
    cli.ok(
        "apply",
        "-f",
        "-",
        input=dump(
            backend("round-a", 9, namespace="roundtrip"),
            backend("round-b", 10, namespace="roundtrip", timeout={"connect": "2s"}),
        ),
    )
    exported = cli.ok("get", "backends", "-n", "roundtrip", "-o", "yaml")
    assert yaml.safe_load(exported)["kind"] == "List"
    out = cli.ok("apply", "-f", "-", input=exported)
    assert out.splitlines() == [
        "backend.turnout.dev/round-a unchanged",
        "backend.turnout.dev/round-b unchanged",
    ]


def test_label_selectors(cli: Cli) -> None:
    a = backend("sel-a", 9, namespace="labels")
    a["metadata"]["labels"] = {"tier": "web"}
    b = backend("sel-b", 9, namespace="labels")
    b["metadata"]["labels"] = {"tier": "db"}
    cli.ok("apply", "-f", "-", input=dump(a, b))
    assert cli.ok("get", "be", "-n", "labels", "-l", "tier=web", "-o", "name") == (
        "backend.turnout.dev/sel-a\n"
    )
    assert cli.ok("get", "be", "-n", "labels", "-l", "tier notin (web)", "-o", "name") == (
        "backend.turnout.dev/sel-b\n"
    )
    bad = cli("get", "be", "-n", "labels", "-l", "tier in (")
    assert bad.code == 1 and bad.err.startswith("error: ") and "Traceback" not in bad.err


def test_describe_shows_metadata_spec_and_conditions(cli: Cli) -> None:
    cli.ok(
        "apply",
        "-f",
        "-",
        input=dump(
            route("described", [to("absent-backend")], hostnames=["d.example"], namespace="desc")
        ),
    )
    out = cli.ok("describe", "httproute", "described", "-n", "desc")
    lines = out.splitlines()
    assert lines[0].split() == ["Name:", "described"]
    assert lines[1].split() == ["Namespace:", "desc"]
    assert "Kind:             HTTPRoute" in lines
    assert "Owner:            api" in lines
    assert "Spec:" in lines and "  hostnames:" in lines and "  - d.example" in lines
    header = lines.index("Conditions:") + 1
    assert lines[header].split() == ["TYPE", "STATUS", "REASON", "GENERATION", "MESSAGE"]
    resolved = next(ln for ln in lines if ln.strip().startswith("ResolvedRefs"))
    assert resolved.split()[1:3] == ["False", "BackendNotFound"]
    wide = cli.ok("get", "route", "described", "-n", "desc", "-o", "wide")
    assert "ResolvedRefs=False(BackendNotFound)" in wide


def test_diff_exit_codes(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "diff.yaml"
    f.write_text(dump(backend("diffed", 9, namespace="diffs")))
    new = cli("diff", "-f", str(f))
    assert new.code == 1
    assert "+++ Backend diffs/diffed" in new.out and "+  name: diffed" in new.out
    cli.ok("apply", "-f", str(f))
    same = cli("diff", "-f", str(f))
    assert (same.code, same.out) == (0, "")
    f.write_text(dump(backend("diffed", 10, namespace="diffs")))
    changed = cli("diff", "-f", str(f))
    assert changed.code == 1
    assert "-  - address: 127.0.0.1:9" in changed.out
    assert "+  - address: 127.0.0.1:10" in changed.out
    assert "\x1b[" not in changed.out  # no colour when not a terminal
    # diff stored nothing
    assert "127.0.0.1:9" in cli.ok("get", "be", "diffed", "-n", "diffs")
    f.write_text(dump(backend("diffed", 10, namespace="diffs", appProtocol="nope")))
    failed = cli("diff", "-f", str(f))
    assert failed.code == 2 and "appProtocol" in failed.err


def test_delete_by_name_selector_and_file(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "del.yaml"
    objs = [backend(f"del-{i}", 9, namespace="deletes") for i in range(4)]
    objs[2]["metadata"]["labels"] = {"gone": "yes"}
    f.write_text(dump(*objs))
    cli.ok("apply", "-f", str(f))
    assert cli.ok("delete", "backend", "del-0", "-n", "deletes", "--dry-run") == (
        "backend.turnout.dev/del-0 deleted (dry run)\n"
    )
    assert cli.ok("delete", "be", "del-0", "-n", "deletes") == "backend.turnout.dev/del-0 deleted\n"
    again = cli("delete", "be", "del-0", "-n", "deletes")
    assert (again.code, again.err) == (1, "error: Backend deletes/del-0 not found\n")
    assert cli.ok("delete", "be", "del-0", "-n", "deletes", "--ignore-not-found") == ""
    assert cli.ok("delete", "be", "-l", "gone=yes", "-n", "deletes") == (
        "backend.turnout.dev/del-2 deleted\n"
    )
    run = cli("delete", "-f", str(f), "-m", "cleanup")
    assert run.code == 1  # del-0 and del-2 were already gone
    assert run.out.splitlines() == [
        "backend.turnout.dev/del-1 deleted",
        "backend.turnout.dev/del-3 deleted",
    ]
    assert "backend.turnout.dev/del-0 not found" in run.err
    assert cli("get", "be", "-n", "deletes").err == "No resources found in deletes namespace.\n"
    cli.ok("apply", "-f", str(f))
    out = cli.ok("delete", "be", "--all", "-n", "deletes")
    assert len(out.splitlines()) == 4
    refused = cli("delete", "be", "-n", "deletes")
    assert refused.code == 2 and "NAME..., -l SELECTOR or --all" in refused.err


def test_file_objects_are_read_only(cli: Cli) -> None:
    listed = cli.ok("get", "gateways", "-o", "wide")
    assert "file:" in listed
    run = cli("delete", "gateway", "gw")
    assert run.code == 1
    assert run.err.startswith("error: Gateway default/gw is managed by file ")
    assert run.err.endswith("; change the file instead\n")


def test_unknown_kinds_and_bad_arguments(cli: Cli) -> None:
    run = cli("get", "widgets")
    assert run.code == 1
    known = [e.plural for e in REGISTRY if e.served]  # the one list of kinds
    assert {"gateways", "httproutes", "backends", "releases", "runbooks"} <= set(known)
    assert run.err == (
        f"error: the server doesn't have a resource type 'widgets' (known: {', '.join(known)})\n"
    )
    run = cli("get")
    assert run.code == 2 and "say which kind" in run.err
    run = cli("get", "be", "-o", "xml")
    assert run.code == 2 and "-o must be one of" in run.err
    run = cli("apply", "-f", "/nonexistent/x.yaml")
    assert (run.code, run.err) == (1, "error: /nonexistent/x.yaml: no such file or directory\n")
