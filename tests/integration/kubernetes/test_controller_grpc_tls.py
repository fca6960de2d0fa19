"""GRPCRoute and TLSRoute through ``turnout serve --kubernetes`` against a real API server.

One Turnout process for the module, its own namespace and Gateway (an HTTP listener for
the GRPCRoute, a TLS passthrough listener for the TLSRoute). The backends are Services
whose EndpointSlices point at a real grpcio server and at real Python ``ssl`` servers;
the requests are real gRPC calls and real TLS handshakes (the client sees the upstream's
certificate: passthrough, no termination). Each route's status is checked too.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.kubernetes import gateway_crds
from tests.integration.kubernetes.conftest import KubeCluster
from tests.integration.kubernetes.test_controller import _wait
from turnout.config.crds import turnout_crds
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.certs import CertificateAuthority

GW = "gateway.networking.k8s.io/v1"
ALPHA2 = "gateway.networking.k8s.io/v1alpha2"
NS = "ctl-l4"
NO_PROXY = [("grpc.enable_http_proxy", 0)]
CONTROLLER = "turnout.dev/gateway-controller"


def _ident(b: bytes) -> bytes:
    return b


def _service(name: str, port: int, app_protocol: str = "") -> dict[str, Any]:
    sport: dict[str, Any] = {"name": "main", "port": port}
    if app_protocol:
        sport["appProtocol"] = app_protocol
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"ports": [sport]},
    }


def _slice(service: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1beta1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-1",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "main", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
    }


class _TLSServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    name = ""
    context: ssl.SSLContext


class _Hello(socketserver.BaseRequestHandler):
    """Say which upstream this is over TLS, then echo one read."""

    def handle(self) -> None:
        server: Any = self.server
        try:
            with server.context.wrap_socket(self.request, server_side=True) as tls:
                tls.sendall(f"hello from {server.name}\n".encode())
                tls.sendall(tls.recv(1024))
        except OSError:
            pass  # the client went away or refused the handshake


@pytest.fixture(scope="module")
def world(kube: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    gateway_crds.install(kube)
    gateway_crds.install(kube, turnout_crds())  # before Turnout starts: it discovers them once
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kube.apply(
        {
            "apiVersion": GW,
            "kind": "GatewayClass",
            "metadata": {"name": "turnout"},
            "spec": {"controllerName": CONTROLLER},
        }
    )
    d = tmp_path_factory.mktemp("ctl-l4")
    ca = CertificateAuthority()
    servers: list[socketserver.BaseServer] = []
    tls_ports: dict[str, int] = {}
    for name, host in (("alpha", "alpha.l4.test"), ("beta", "beta.l4.test")):
        cert, key = ca.issue(host).write(d, name)
        server = _TLSServer(("127.0.0.1", 0), _Hello)
        server.name = name
        server.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.context.load_cert_chain(cert, key)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        tls_ports[name] = server.server_address[1]
    http_port, tls_port = free_port(), free_port()
    kube.apply(
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": NS},
            "spec": {
                "gatewayClassName": "turnout",
                "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                "listeners": [
                    {"name": "grpc", "protocol": "HTTP", "port": http_port},
                    {
                        "name": "tls",
                        "protocol": "TLS",
                        "port": tls_port,
                        "tls": {"mode": "Passthrough"},
                    },
                ],
            },
        }
    )
    yield {"dir": d, "ca": ca, "http": http_port, "tls": tls_port, "tls_ports": tls_ports}
    for server in servers:
        server.shutdown()
        server.server_close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def grpc_upstream() -> Iterator[int]:
    def unary(request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata((("x-served-by", "greeter"),))
        return b"hi " + request

    def fail(request: bytes, context: Any) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
        return b""

    k: dict[str, Any] = {"request_deserializer": _ident, "response_serializer": _ident}
    handler = grpc.method_handlers_generic_handler(
        "shop.Greeter",
        {
            "Hello": grpc.unary_unary_rpc_method_handler(unary, **k),
            "Fail": grpc.unary_unary_rpc_method_handler(fail, **k),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=NO_PROXY)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


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


def _parent_conditions(kube: KubeCluster, route: dict[str, Any]) -> Any:
    got = kube.get(route) or {}
    parents = (got.get("status") or {}).get("parents") or []
    if not parents:
        return None
    assert parents[0]["controllerName"] == CONTROLLER
    return got, parents[0], {c["type"]: c for c in parents[0]["conditions"]}


def _accepted_and_resolved(kube: KubeCluster, route: dict[str, Any]) -> dict[str, Any]:
    def ok() -> Any:
        found = _parent_conditions(kube, route)
        if not found:
            return None
        got, parent, conds = found
        both = all(conds.get(t, {}).get("status") == "True" for t in ("Accepted", "ResolvedRefs"))
        return both and (got, parent, conds)

    got, parent, conds = _wait(ok, what=f"{route['kind']} Accepted and ResolvedRefs True")
    assert conds["Accepted"]["observedGeneration"] == got["metadata"]["generation"]
    return dict(parent)


def test_grpc_route_to_a_service_is_served(
    kube: KubeCluster, world: dict[str, Any], grpc_upstream: int, turnout: TurnoutProcess
) -> None:
    # no appProtocol on the Service port: a GRPCRoute backend speaks HTTP/2 anyway
    kube.apply(_service("greeter", 50051))
    kube.apply(_slice("greeter", grpc_upstream))
    route = {
        "apiVersion": GW,
        "kind": "GRPCRoute",
        "metadata": {"name": "greeter", "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "edge", "sectionName": "grpc"}],
            "rules": [
                {
                    "matches": [{"method": {"service": "shop.Greeter"}}],
                    "backendRefs": [{"name": "greeter", "port": 50051}],
                }
            ],
        },
    }
    kube.apply(route)
    with grpc.insecure_channel(f"127.0.0.1:{world['http']}", options=NO_PROXY) as channel:
        hello = channel.unary_unary("/shop.Greeter/Hello")

        def answered() -> Any:
            try:
                return hello.with_call(b"there", timeout=5)
            except grpc.RpcError as exc:
                raise AssertionError(f"{exc.code()}: {exc.details()}") from exc

        reply, call = _wait(answered, timeout=15, what="a gRPC answer through the GRPCRoute")
        assert reply == b"hi there"
        assert ("x-served-by", "greeter") in call.trailing_metadata()
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary("/shop.Greeter/Fail")(b"1", timeout=5)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        assert failed.value.details() == "no such order"
        with pytest.raises(grpc.RpcError) as unrouted:  # a service no rule matches
            channel.unary_unary("/shop.Other/Hello")(b"1", timeout=5)
        assert unrouted.value.code() != grpc.StatusCode.OK
    parent = _accepted_and_resolved(kube, route)
    assert parent["parentRef"]["name"] == "edge"
    assert parent["parentRef"].get("sectionName") == "grpc"


def _tls_hello(world: dict[str, Any], host: str) -> tuple[str, str]:
    context = ssl.create_default_context(cadata=world["ca"].cert_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", world["tls"]), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        peer = dict(x[0] for x in tls.getpeercert()["subject"])  # type: ignore[index, misc]
        tls.sendall(b"ping")
        data = b""
        while b"ping" not in data:
            chunk = tls.recv(1024)
            if not chunk:
                break
            data += chunk
        return data.decode(), str(peer.get("commonName", ""))


def test_tls_route_passes_sni_through_to_the_service(
    kube: KubeCluster, world: dict[str, Any], turnout: TurnoutProcess
) -> None:
    for name in ("alpha", "beta"):
        kube.apply(_service(f"tls-{name}", 443))
        kube.apply(_slice(f"tls-{name}", world["tls_ports"][name]))
    routes = [
        {
            "apiVersion": ALPHA2,
            "kind": "TLSRoute",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "parentRefs": [{"name": "edge", "sectionName": "tls"}],
                "hostnames": [f"{name}.l4.test"],
                "rules": [{"backendRefs": [{"name": f"tls-{name}", "port": 443}]}],
            },
        }
        for name in ("alpha", "beta")
    ]
    for route in routes:
        kube.apply(route)
    for name in ("alpha", "beta"):
        data, common_name = _wait(
            lambda name=name: _tls_hello(world, f"{name}.l4.test"),  # type: ignore[misc]
            timeout=15,
            what=f"a TLS handshake with the {name} upstream",
        )
        assert data == f"hello from {name}\nping"
        assert common_name == f"{name}.l4.test"  # the upstream's certificate: passthrough
    # a name no TLSRoute claims gets no upstream
    with pytest.raises((ssl.SSLError, OSError)):
        _tls_hello(world, "nobody.l4.test")
    for route in routes:
        parent = _accepted_and_resolved(kube, route)
        assert parent["parentRef"].get("sectionName") == "tls"


def test_gateway_status_counts_both_route_kinds(
    kube: KubeCluster, world: dict[str, Any], turnout: TurnoutProcess
) -> None:
    gw = {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "edge", "namespace": NS}}

    def listeners() -> Any:
        got = kube.get(gw) or {}
        by_name = {x["name"]: x for x in (got.get("status") or {}).get("listeners") or []}
        counts = {n: x["attachedRoutes"] for n, x in by_name.items()}
        return counts == {"grpc": 1, "tls": 2} and by_name

    by_name = _wait(listeners, what="attachedRoutes grpc 1, tls 2")
    assert [k["kind"] for k in by_name["tls"]["supportedKinds"]] == ["TLSRoute"]
    assert "GRPCRoute" in [k["kind"] for k in by_name["grpc"]["supportedKinds"]]
