"""Blue-green and A/B releases over real sockets: the preview key (the sandbox routing
key machinery) reaches the candidate before promotion, promotion moves everyone at once
and an abort rolls back at once; an A/B test sends matching requests only."""

from __future__ import annotations

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.releases.helpers import Users, apply, release, wait_phase
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess

PATH = "/api/v1/namespaces/default/releases/orders-v2"
PREVIEW = {"x-turnout-routing-key": "orders-preview"}


def _shop(serve: ServeFactory, port: int, echo: EchoFactory) -> TurnoutProcess:
    stable, candidate = echo("orders-v1"), echo("orders-v2")
    return serve(
        dump(
            gateway(port=port),
            backend("orders", stable.port),
            backend("orders-v2", candidate.port),
            route("shop", [to("orders")]),
        )
    )


def _pods(port: int, headers: dict[str, str] | None = None, n: int = 30) -> set[str]:
    users = Users(port)
    for _ in range(n):
        users.one(headers)
    assert users.failed == 0
    return set(users.pods)


def test_blue_green_preview_promote_and_instant_rollback(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    proc = _shop(serve, port, echo)
    apply(
        proc,
        release(
            "orders-v2",
            "orders",
            "orders-v2",
            strategy={"blueGreen": {"previewKey": "orders-preview"}},
        ),
    )
    wait_phase(proc, "orders-v2", "Paused")  # waiting for promotion
    assert _pods(port, PREVIEW) == {"orders-v2"}
    assert _pods(port) == {"orders-v1"}
    assert proc.api("POST", f"{PATH}/promote")[0] == 200
    wait_phase(proc, "orders-v2", "Promoted")
    assert _pods(port) == {"orders-v2"}
    assert proc.api("POST", f"{PATH}/abort", {"reason": "rollback"})[0] == 200
    wait_phase(proc, "orders-v2", "Aborted")
    assert _pods(port) == {"orders-v1"}
    assert _pods(port, PREVIEW) == {"orders-v1"}  # the preview is gone too


def test_an_ab_test_sends_matching_requests_only(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    proc = _shop(serve, port, echo)
    apply(
        proc,
        release(
            "orders-v2",
            "orders",
            "orders-v2",
            strategy={"abTest": {"headers": [{"name": "X-Beta", "value": "yes"}]}},
        ),
    )
    wait_phase(proc, "orders-v2", "Paused")
    assert _pods(port, {"x-beta": "yes"}) == {"orders-v2"}
    assert _pods(port, {"x-beta": "no"}) == {"orders-v1"}
    assert _pods(port) == {"orders-v1"}
