"""``turnout serve --kubernetes`` against a real API server, with real proxied requests.

One Turnout process per module; the tests run in order and build on each other's
objects (Gateway, route, Service + EndpointSlice pointing at echo servers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EchoFactory
from tests.integration.kubernetes import gateway_crds
from tests.integration.kubernetes.conftest import KubeCluster
from turnout.config.crds import turnout_crds
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.requests import get

GW = "gateway.networking.k8s.io/v1"
NS = "ctl"


def _wait(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


def _slice(name: str, service: str, port: int, ready: dict[str, bool]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1beta1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ok}} for ip, ok in ready.items()],
    }


@pytest.fixture(scope="module")
def world(kube: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    gateway_crds.install(kube)
    gateway_crds.install(kube, turnout_crds())  # before Turnout starts: it discovers them once
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    port = free_port()
    kube.apply(
        {
            "apiVersion": GW,
            "kind": "GatewayClass",
            "metadata": {"name": "turnout"},
            "spec": {"controllerName": "turnout.dev/gateway-controller"},
        }
    )
    kube.apply(
        {
            "apiVersion": GW,
            "kind": "GatewayClass",
            "metadata": {"name": "someone-else"},
            "spec": {"controllerName": "example.com/other"},
        }
    )
    kube.apply(
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "gatewayClassName": "turnout",
                "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                "listeners": [{"name": "http", "protocol": "HTTP", "port": port}],
            },
        }
    )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "orders", "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }
    )
    d = tmp_path_factory.mktemp("ctl")
    yield {"port": port, "dir": d}


@pytest.fixture(scope="module")
def echo_module(bg: Any) -> Iterator[EchoFactory]:
    from turnout.samples.echo import EchoIdentity, start_echo

    servers = []

    def start(pod: str = "echo", namespace: str = NS) -> Any:
        server, state = bg.run(start_echo(identity=EchoIdentity(namespace, pod, pod)))
        servers.append(server)
        return state

    yield start
    for server in servers:
        bg.call(server.close)


@pytest.fixture(scope="module")
def echo(echo_module: EchoFactory) -> EchoFactory:
    return echo_module


@pytest.fixture(scope="module")
def turnout(kube: KubeCluster, world: dict[str, Any]) -> Iterator[TurnoutProcess]:
    d: Path = world["dir"]
    proc = TurnoutProcess(
        d,
        workers=2,
        use_files=False,
        extra_args=["--kubernetes", "--kubeconfig", kube.kubeconfig],
    )
    proc.start(timeout=30)
    yield proc
    proc.stop()


def _route(name: str, path: str, service: str, generation_note: str = "") -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": NS,
            "annotations": {"note": generation_note} if generation_note else {},
        },
        "spec": {
            "parentRefs": [{"name": "web"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                    "backendRefs": [{"name": service, "port": 80}],
                }
            ],
        },
    }


def test_route_to_service_endpoints_is_served(
    kube: KubeCluster, world: dict[str, Any], echo: EchoFactory, turnout: TurnoutProcess
) -> None:
    a = echo("orders-a")
    world["a"] = a.port
    kube.apply(_slice("orders-1", "orders", a.port, {"127.0.0.1": True}))
    kube.apply(_route("orders", "/orders", "orders"))
    reply = _wait(
        lambda: (r := get(world["port"], "/orders/1")).status == 200 and r, what="a proxied 200"
    )
    assert reply.json()["pod"] == "orders-a"


def test_status_is_written_back(
    kube: KubeCluster, world: dict[str, Any], turnout: TurnoutProcess
) -> None:
    def route_status() -> Any:
        got = kube.get(_route("orders", "/orders", "orders"))
        assert got is not None
        parents = (got.get("status") or {}).get("parents") or []
        return parents and (got, parents)

    route, parents = _wait(route_status, what="route status")
    assert parents[0]["controllerName"] == "turnout.dev/gateway-controller"
    conds = {c["type"]: c for c in parents[0]["conditions"]}
    assert conds["Accepted"]["status"] == "True"
    assert conds["ResolvedRefs"]["status"] == "True"
    assert conds["Accepted"]["observedGeneration"] == route["metadata"]["generation"]
    gc = kube.get({"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "turnout"}})
    assert gc is not None
    assert [c["status"] for c in gc["status"]["conditions"] if c["type"] == "Accepted"] == ["True"]
    other = kube.get(
        {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "someone-else"}}
    )
    assert other is not None and not (other.get("status") or {}).get("conditions")

    def gateway_status() -> Any:
        gw = kube.get(
            {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "web", "namespace": NS}}
        )
        assert gw is not None
        listeners = (gw.get("status") or {}).get("listeners") or []
        return listeners and listeners[0]["attachedRoutes"] == 1 and gw

    gw = _wait(gateway_status, what="gateway status with one attached route")
    assert gw["status"]["addresses"] == [{"type": "IPAddress", "value": "127.0.0.1"}]
    assert {c["type"]: c["status"] for c in gw["status"]["conditions"]} == {
        "Accepted": "True",
        "Programmed": "True",
    }
    kinds = [k["kind"] for k in gw["status"]["listeners"][0]["supportedKinds"]]
    assert kinds == ["HTTPRoute", "GRPCRoute"]


def test_endpoint_changes_reach_workers_within_a_second(
    kube: KubeCluster, world: dict[str, Any], echo: EchoFactory, turnout: TurnoutProcess
) -> None:
    b = echo("orders-b")
    # a second slice with a new ready endpoint; the first endpoint stops being ready
    start = time.monotonic()
    kube.apply(_slice("orders-2", "orders", b.port, {"127.0.0.1": True}))
    kube.apply(_slice("orders-1", "orders", world["a"], {"127.0.0.1": False}))
    # each worker answers on its own connections: ask on fresh connections until every
    # answer for a second's worth of tries comes from the new endpoint
    _wait(
        lambda: all(get(world["port"], "/orders").json()["pod"] == "orders-b" for _ in range(6)),
        timeout=5.0,
        what="every worker on the new endpoint",
    )
    assert time.monotonic() - start < 1.5  # under load: 1 s target plus the request time


def test_invalid_route_is_refused_in_status_and_others_keep_serving(
    kube: KubeCluster, world: dict[str, Any], turnout: TurnoutProcess
) -> None:
    bad = _route("bad", "/bad", "orders")
    bad["spec"]["rules"][0]["matches"][0]["path"] = {"type": "RegularExpression", "value": "(["}
    kube.apply(bad)

    def refused() -> Any:
        got = kube.get(bad) or {}
        parents = (got.get("status") or {}).get("parents") or []
        conds = {c["type"]: c for c in parents[0]["conditions"]} if parents else {}
        return conds.get("Accepted", {}).get("status") == "False" and conds["Accepted"]

    cond = _wait(refused, what="Accepted False on the bad route")
    assert "regular expression" in cond["message"]
    assert get(world["port"], "/orders").status == 200
    kube.delete(bad)


def test_api_server_restart_keeps_serving_and_watches_resume(
    kube: KubeCluster, world: dict[str, Any], echo: EchoFactory, turnout: TurnoutProcess
) -> None:
    kube.stop_apiserver()
    try:
        for _ in range(5):  # the data plane keeps the last good revision
            assert get(world["port"], "/orders").status == 200
            time.sleep(0.2)
        assert turnout.status()["ready"]
    finally:
        kube.start_apiserver()
    c = echo("late")
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "late", "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }
    )
    kube.apply(_slice("late-1", "late", c.port, {"127.0.0.1": True}))
    kube.apply(_route("late", "/late", "late"))
    reply = _wait(
        lambda: (r := get(world["port"], "/late")).status == 200 and r,
        timeout=20.0,
        what="a route created after the restart",
    )
    assert reply.json()["pod"] == "late"
    assert "watch failed" in turnout.stderr()


def test_turnout_kinds_as_crds_are_served_and_refusals_reach_their_status(
    kube: KubeCluster, world: dict[str, Any], echo: EchoFactory, turnout: TurnoutProcess
) -> None:
    d = echo("direct")
    backend = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": "direct", "namespace": NS},
        "spec": {"endpoints": [{"address": f"127.0.0.1:{d.port}"}]},
    }
    kube.apply(backend)
    route = _route("direct", "/direct", "direct")
    route["spec"]["rules"][0]["backendRefs"] = [
        {"group": "turnout.dev", "kind": "Backend", "name": "direct"}
    ]
    kube.apply(route)
    reply = _wait(
        lambda: (r := get(world["port"], "/direct")).status == 200 and r, what="the CRD Backend"
    )
    assert reply.json()["pod"] == "direct"
    # a value the CRD schema lets through (no Python pattern in it) but Turnout refuses
    broken = {
        **backend,
        "metadata": {"name": "broken", "namespace": NS},
        "spec": {"endpoints": [{"address": "not an address"}]},
    }
    kube.apply(broken)

    def refused() -> Any:
        got = kube.get(broken) or {}
        conds = (got.get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Accepted" and c["status"] == "False"), None)

    cond = _wait(refused, what="Accepted False on the broken Backend")
    assert "spec.endpoints[0].address" in cond["message"]
    ok = _wait(
        lambda: [
            c
            for c in ((kube.get(backend) or {}).get("status") or {}).get("conditions", [])
            if c["status"] == "True"
        ],
        what="Accepted True on the good Backend",
    )
    assert ok[0]["observedGeneration"] == 1
    assert get(world["port"], "/direct").status == 200


def test_tcp_route_to_a_service_through_a_listener_added_later(
    kube: KubeCluster, world: dict[str, Any], turnout: TurnoutProcess
) -> None:
    tcp_port = free_port()
    gw = kube.get(
        {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "web", "namespace": NS}}
    )
    assert gw is not None
    listeners = [*gw["spec"]["listeners"], {"name": "tcp", "protocol": "TCP", "port": tcp_port}]
    kube.apply(
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {**gw["spec"], "listeners": listeners},
        }
    )
    kube.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TCPRoute",
            "metadata": {"name": "raw", "namespace": NS},
            "spec": {
                "parentRefs": [{"name": "web", "sectionName": "tcp"}],
                "rules": [{"backendRefs": [{"name": "orders", "port": 80}]}],
            },
        }
    )
    reply = _wait(lambda: (r := get(tcp_port, "/any")).status == 200 and r, what="TCP proxying")
    assert reply.json()["pod"] in ("orders-a", "orders-b")


def test_a_listener_that_cannot_bind_is_not_programmed_and_the_old_revision_serves(
    kube: KubeCluster, world: dict[str, Any], turnout: TurnoutProcess
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        gw = {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "busy", "namespace": NS},
            "spec": {
                "gatewayClassName": "turnout",
                "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                "listeners": [{"name": "http", "protocol": "HTTP", "port": taken}],
            },
        }
        kube.apply(gw)

        def pending() -> Any:
            got = kube.get(gw) or {}
            conds = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
            return conds.get("Programmed", {}).get("reason") == "Pending" and conds["Programmed"]

        cond = _wait(pending, what="Programmed False (Pending) on the Gateway")
        assert cond["status"] == "False" and str(taken) in cond["message"]
        assert get(world["port"], "/orders").status == 200  # the last good revision
        kube.delete(gw)
    web = {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "web", "namespace": NS}}

    def programmed_again() -> Any:
        got = kube.get(web) or {}
        conds = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
        return conds.get("Programmed", {}).get("status") == "True"

    _wait(programmed_again, what="the Gateway Programmed again after the bad one left")


def test_https_listener_with_a_certificate_from_another_namespace_by_reference_grant(
    kube: KubeCluster, world: dict[str, Any], turnout: TurnoutProcess
) -> None:
    import socket
    import ssl

    from turnout.testing.certs import CertificateAuthority

    ca = CertificateAuthority()
    secret = ca.issue("secure.test").secret("site-cert", "certs")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "certs"}})
    kube.apply(secret)
    tls_port = free_port()
    kube.apply(
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "secure", "namespace": NS},
            "spec": {
                "gatewayClassName": "turnout",
                "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                "listeners": [
                    {
                        "name": "https",
                        "protocol": "HTTPS",
                        "port": tls_port,
                        "hostname": "secure.test",
                        "tls": {"certificateRefs": [{"name": "site-cert", "namespace": "certs"}]},
                    }
                ],
            },
        }
    )
    route = _route("secure", "/", "orders")
    route["spec"]["parentRefs"] = [{"name": "secure"}]
    kube.apply(route)

    def listener_refs() -> Any:
        got = (
            kube.get(
                {
                    "apiVersion": GW,
                    "kind": "Gateway",
                    "metadata": {"name": "secure", "namespace": NS},
                }
            )
            or {}
        )
        listeners = (got.get("status") or {}).get("listeners") or []
        conds = {c["type"]: c for c in listeners[0]["conditions"]} if listeners else {}
        return conds.get("ResolvedRefs")

    # without a ReferenceGrant the certificate is not used, and the status says so
    refused = _wait(listener_refs, what="listener ResolvedRefs")
    assert refused["status"] == "False"
    kube.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": "gateways-may-use-certs", "namespace": "certs"},
            "spec": {
                "from": [
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": NS}
                ],
                "to": [{"group": "", "kind": "Secret"}],
            },
        }
    )
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())

    def https_status() -> Any:
        with (
            socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="secure.test") as tls,
        ):
            tls.sendall(b"GET /x HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
            return tls.recv(64).startswith(b"HTTP/1.1 200")

    _wait(https_status, timeout=15, what="an HTTPS answer with the granted certificate")
    _wait(lambda: (listener_refs() or {}).get("status") == "True", what="ResolvedRefs True")
