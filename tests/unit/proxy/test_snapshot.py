"""Compiled route actions: the weighted backend split, and route precedence by age/name."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.core.netaddr import Address
from turnout.observe.stats import RouteStats, WorkerStats
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.snapshot.builder import SnapshotBuilder
from turnout.proxy.snapshot.tables import BackendChoice, RouteAction
from turnout.proxy.upstream.pool import EndpointPool
from turnout.testing.manifests import dump, gateway, route


def action(*weights: int) -> RouteAction:
    act = RouteAction("default/r", RouteStats())
    act.choices = tuple(BackendChoice(None, f"b{i}", RouteStats()) for i in range(len(weights)))
    total = 0
    act.cumulative = []
    for w in weights:
        total += w
        act.cumulative.append(total)
    act.total_weight = total
    return act


def chosen(act: RouteAction, r: float) -> str | None:
    choice = act.choose(lambda: r)
    return None if choice is None else choice.label


@pytest.mark.parametrize(
    ("weights", "rand", "expected"),
    [
        ((1,), 0.0, "b0"),
        ((1,), 0.99, "b0"),
        ((0,), 0.5, None),  # a single backend of weight 0 gets nothing
        ((), 0.5, None),
        ((0, 0), 0.5, None),
        ((1, 1), 0.0, "b0"),
        ((1, 1), 0.49, "b0"),
        ((1, 1), 0.5, "b1"),
        ((1, 1), 0.999, "b1"),
        ((0, 1), 0.0, "b1"),  # weight 0 is never chosen, even at the boundary
        ((1, 0, 1), 0.5, "b2"),
        ((1, 0, 1), 0.4999, "b0"),
        ((90, 10), 0.89, "b0"),
        ((90, 10), 0.9, "b1"),
        ((3, 0, 0, 1), 0.75, "b3"),
    ],
)
def test_choose_splits_by_cumulative_weight(
    weights: tuple[int, ...], rand: float, expected: str | None
) -> None:
    assert chosen(action(*weights), rand) == expected


def test_choose_follows_the_weights_over_a_uniform_grid() -> None:
    act = action(5, 0, 3, 2)
    grid = [i / 1000 for i in range(1000)]

    labels = [chosen(act, r) for r in grid]

    assert {lab: labels.count(lab) for lab in set(labels)} == {"b0": 500, "b2": 300, "b3": 200}


def no_pools(address: Address, max_idle: int, idle_timeout: float) -> EndpointPool:
    raise AssertionError("no pool expected")


def snapshot_for(*routes: dict[str, Any]) -> Any:
    resources, problems = parse_text(dump(gateway(), *routes), "m.yaml")
    assert problems == []
    config, problems = validate(resources)
    assert [p for p in problems if p.severity == "error"] == []
    # These routes name no backends, so no endpoint pool is ever asked for.
    return SnapshotBuilder(config, WorkerStats(), no_pools).build(1)


def catch_all(
    name: str, timestamp: str | None = None, namespace: str = "default"
) -> dict[str, Any]:
    obj = route(name, [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}])
    obj["metadata"]["namespace"] = namespace
    if timestamp is not None:
        obj["metadata"]["creationTimestamp"] = timestamp
    return obj


def routed(snapshot: Any) -> str:
    table = snapshot.sockets["127.0.0.1:8080"]
    _, cand = table.route(RequestHead(b"GET", b"/x", b"", [], b"a", "a"))
    assert cand is not None
    return str(cand.action.route_label)


def test_the_oldest_route_wins() -> None:
    snap = snapshot_for(
        catch_all("a-new", "2024-06-01T00:00:00Z"), catch_all("z-old", "2024-01-01T00:00:00Z")
    )

    assert routed(snap) == "default/z-old"


def test_without_timestamps_names_decide() -> None:
    # Objects from files are created together: the "{namespace}/{name}" tie-break decides.
    assert routed(snapshot_for(catch_all("b"), catch_all("a"))) == "default/a"


def test_older_routes_win_whatever_their_name() -> None:
    snap = snapshot_for(
        catch_all("a", "2024-01-02T00:00:00Z"), catch_all("b", "2024-01-01T00:00:00+00:00")
    )
    assert routed(snap) == "default/b"


def test_equal_timestamps_are_broken_by_namespace_and_name() -> None:
    ts = "2024-01-01T00:00:00Z"

    snap = snapshot_for(catch_all("b-route", ts), catch_all("a-route", ts))

    assert routed(snap) == "default/a-route"
