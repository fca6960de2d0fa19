"""The environment of the Gateway API conformance runner: suite data, echo fleet, manifests,
and one long-lived Turnout process whose configuration is swapped per test.

Semantics follow ``shared/conformance/gateway-api/README.md`` (sections 1-2); the
choices a local runner has to make are explained here.

**Suite data.** Read from ``$TURNOUT_CONFORMANCE_DIR`` (default: the ``shared/`` directory
beside the repository, ``<repo>/../shared/conformance/gateway-api``): ``cases.yaml``,
``base-manifests.yaml`` and the per-test manifests, used verbatim apart from the
rewriting below.

**Services → Backends** (README 2.2). Turnout rejects Kubernetes ``Service`` /
``Deployment`` / ``ConfigMap`` documents, so they are filtered out of
``base-manifests.yaml`` and every Service that has a local echo implementation is replaced
by a ``turnout.dev/v1alpha1`` ``Backend`` of the same name and namespace (backendRefs of
kind Service resolve to it). A Backend endpoint carries its own ``host:port``, and a
Service port maps to a *different* local server per port (8080 HTTP echo, 8081 h2c echo,
8082 WebSocket echo), so one Backend cannot stand for every port of its Service at once.
Instead the Backends are generated **per test**: for each Service, the runner looks at the
ports the test's manifests name for it (HTTPRoute/GRPCRoute ``backendRefs`` and
``RequestMirror`` targets) and points the Backend's endpoints at the replicas serving that
port. The Service port's ``appProtocol`` becomes the Backend's ``spec.appProtocol``, so
Turnout speaks HTTP/2 with prior knowledge to the ``kubernetes.io/h2c`` ports:

- ``<any Service>:8080`` (no appProtocol) → ``turnout.samples.echo`` HTTP echo; plain
  Backend.
- ``infra-backend-v1:8082`` (appProtocol ``kubernetes.io/ws``) → a ``websockets`` echo
  whose ``/ws`` sends every frame back (other paths answer the JSON echo); Backend with
  ``appProtocol: kubernetes.io/ws``.
- ``infra-backend-v1:8081`` (appProtocol ``kubernetes.io/h2c``) → the h2c-only echo
  (``echoes.H2cEcho``: HTTP/2 prior knowledge, same JSON body, 400 to HTTP/1.x); Backend
  with ``appProtocol: kubernetes.io/h2c``.
- ``grpc-infra-backend-v1/-v2/-v3:8080`` (appProtocol ``kubernetes.io/h2c``) → upstream's
  gRPC echo service (``echoes.GrpcEcho``, grpcio); Backend with
  ``appProtocol: kubernetes.io/h2c``.

A Service the test does not reference gets its 8080 endpoints. A test naming two
ports of one Service, or a port with no local implementation, is a runner error (no
transcribed, runnable test does either). Replica counts come from the Deployments (2 each,
``infra-backend-v3`` 1); pod names follow the README's rule: ``<service>-local-<i>``.
Services that are not echo-basic upstream (``tls-backend*``, ``tcp-backend``, ``coredns``)
get no Backend; no runnable case uses them.

**Gateways** (README 2.3). Every Gateway named in any manifest gets its own loopback
address ``$TURNOUT_CONFORMANCE_NET.N`` (default ``127.0.1.N``; pytest-xdist worker ``gwK``
uses ``127.0.(K+1).N``; N in order of first appearance), injected as ``spec.addresses``.
Declared listener ports (80, 8080, 8090) are kept, so redirects see the declared ports.
The runner checks at start-up that it can bind every address/port itself before Turnout
does. ``{GATEWAY_CLASS_NAME}`` becomes ``turnout``. HTTPS listeners are handled the same
way: ``same-namespace-with-https-listener`` gets its own address like every Gateway and
keeps its four listeners on the declared port 443 (one TLS socket, listener chosen by SNI).

**TLS material** (README 2.4). Once per session the runner makes a throw-away CA
(``turnout.testing.certs``) and one leaf certificate whose subject alternative names are
every hostname an HTTPS case sends as SNI or Host, every HTTPS listener hostname, and the
upstream names ``*.org`` and ``*.wildcard.org`` (upstream's bare ``*`` is left out: the
client checks no hostnames, so the names only document intent). Every Secret an HTTPS
listener references (only ``gateway-conformance-infra/tls-validity-checks-certificate``)
is added to the base manifests as a ``kubernetes.io/tls`` Secret holding it. The client
trusts exactly that CA, with hostname checking off: the misdirected-request cases
deliberately send a Host (and sometimes an SNI) the certificate is not asked to cover, and
the runner tests routing, not certificate selection.

**One process, hot reload** (README 1). Turnout runs once per session
(``--workers 1 --no-watch --access-log off``). Applying a test writes base + Backends +
the test's manifests into one file (atomic rename), sends SIGHUP and waits until the
admin ``/readyz`` reports a higher revision and every worker is on it; a rejected reload
fails the test with Turnout's located errors. A per-apply annotation on the infra
Namespace guarantees the configuration fingerprint changes, so every apply is a reload.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.conformance.echoes import GrpcEcho, H2cEcho
from turnout.samples.echo import EchoIdentity, EchoState, canonical, start_echo
from turnout.testing import BackgroundLoop, TurnoutProcess
from turnout.testing.certs import CertificateAuthority, Leaf

_REPO = Path(__file__).resolve().parents[2]
SUITE_DIR = Path(
    os.environ.get("TURNOUT_CONFORMANCE_DIR")
    or _REPO.parent / "shared" / "conformance" / "gateway-api"
)
# Under pytest-xdist every worker runs its own Turnout, so each gets its own /24.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
NET = os.environ.get("TURNOUT_CONFORMANCE_NET") or f"127.0.{1 + int(_WORKER or 0)}"
INFRA_NS = "gateway-conformance-infra"
GATEWAY_CLASS = "turnout"
K8S_ONLY_KINDS = frozenset({"Service", "Deployment", "ConfigMap"})
# Names upstream's certificate carries besides the ones the cases use (README 2.4).
UPSTREAM_CERT_NAMES = ("*.org", "*.wildcard.org")
# Services whose upstream image is not an echo (TLS, TCP, DNS): no local echo.
NON_ECHO_SERVICES = frozenset({"tls-backend", "tls-backend-2", "tcp-backend", "coredns"})
# Services running upstream's echo in gRPC mode (GRPC_ECHO_SERVER=1): every port is gRPC.
GRPC_SERVICES = frozenset(
    {"grpc-infra-backend-v1", "grpc-infra-backend-v2", "grpc-infra-backend-v3"}
)
# Service port appProtocol -> local implementation ("" = plain HTTP echo; None = none).
PORT_IMPLEMENTATIONS: dict[str, str | None] = {
    "": "http",
    "kubernetes.io/ws": "ws",
    "kubernetes.io/h2c": "h2c",
}


class RunnerError(Exception):
    """The runner cannot set a test up (not a Turnout failure)."""


# --- suite data -----------------------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@dataclass
class Suite:
    directory: Path
    defaults: dict[str, Any]
    tests: dict[str, dict[str, Any]]
    not_transcribed: dict[str, dict[str, Any]]
    base_docs: list[dict[str, Any]]
    addresses: dict[str, str]  # Gateway name -> loopback address

    @classmethod
    def load(cls, directory: Path = SUITE_DIR) -> Suite:
        data = yaml.safe_load((directory / "cases.yaml").read_text())
        tests = {t["name"]: t for t in data["tests"]}
        base = load_yaml_docs(directory / "base-manifests.yaml")
        names: list[str] = []
        files = [directory / "base-manifests.yaml"]
        files += [directory / m for t in data["tests"] for m in t["manifests"]]
        for f in files:
            for doc in load_yaml_docs(f):
                if doc.get("kind") == "Gateway" and doc["metadata"]["name"] not in names:
                    names.append(doc["metadata"]["name"])
        if len(names) > 254:
            raise RunnerError("more Gateways than addresses in a /24")
        addresses = {n: f"{NET}.{i + 1}" for i, n in enumerate(names)}
        return cls(
            directory,
            data["defaults"],
            tests,
            {t["name"]: t for t in data.get("skipped", [])},
            base,
            addresses,
        )

    def manifests(self, test: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name in test["manifests"]:
            out.extend(load_yaml_docs(self.directory / name))
        return out

    def services(self) -> list[ServiceInfo]:
        replicas = {
            (d["metadata"].get("namespace", "default"), d["metadata"]["name"]): d["spec"].get(
                "replicas", 1
            )
            for d in self.base_docs
            if d.get("kind") == "Deployment"
        }
        out = []
        for d in self.base_docs:
            if d.get("kind") != "Service":
                continue
            ns, name = d["metadata"].get("namespace", "default"), d["metadata"]["name"]
            ports = {p["port"]: p.get("appProtocol", "") for p in d["spec"]["ports"]}
            out.append(ServiceInfo(ns, name, ports, int(replicas.get((ns, name), 1))))
        return out

    def gateway_bindings(self, docs: Iterable[dict[str, Any]]) -> set[tuple[str, int]]:
        return {
            (self.addresses[d["metadata"]["name"]], int(lst["port"]))
            for d in docs
            if d.get("kind") == "Gateway"
            for lst in d["spec"]["listeners"]
        }

    def all_docs(self) -> list[dict[str, Any]]:
        """Base manifests plus every test's manifests."""
        docs = list(self.base_docs)
        for test in self.tests.values():
            docs.extend(self.manifests(test))
        return docs


@dataclass
class ServiceInfo:
    namespace: str
    name: str
    ports: dict[int, str]  # port -> appProtocol ("" when none)
    replicas: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def implementation(self, port: int) -> str | None:
        if self.name in NON_ECHO_SERVICES or port not in self.ports:
            return None
        if self.name in GRPC_SERVICES:
            return "grpc"
        return PORT_IMPLEMENTATIONS.get(self.ports[port])


# --- TLS material ---------------------------------------------------------------------------


def https_listeners(docs: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(Gateway namespace, listener) for every HTTPS listener in ``docs``."""
    return [
        (d["metadata"].get("namespace", "default"), lst)
        for d in docs
        if d.get("kind") == "Gateway"
        for lst in d["spec"]["listeners"]
        if lst.get("protocol") == "HTTPS"
    ]


def https_case_names(tests: Iterable[dict[str, Any]]) -> set[str]:
    """Every DNS name an HTTPS case sends as SNI or Host (ports and IP addresses left out)."""
    names: set[str] = set()
    for test in tests:
        for case in test["cases"]:
            req = case["request"]
            if req.get("scheme", "http") != "https":
                continue
            for value in (req.get("sni"), req.get("host")):
                name = host_name(str(value or ""))
                if name:
                    names.add(name)
    return names


def host_name(host: str) -> str:
    """``host`` without a port, lower-cased; "" for an IP address (no SNI for those)."""
    if host.startswith("["):
        return ""
    name = host.rsplit(":", 1)[0].lower()
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return ""


@dataclass
class TlsMaterial:
    """The session's CA, the one leaf certificate every HTTPS listener serves, and the
    Secrets carrying it."""

    ca: CertificateAuthority
    leaf: Leaf
    names: list[str]
    secret_refs: list[tuple[str, str]]  # (namespace, name)

    @classmethod
    def for_suite(cls, suite: Suite) -> TlsMaterial:
        docs = suite.all_docs()
        listeners = https_listeners(docs)
        names = https_case_names(suite.tests.values())
        names.update(lst["hostname"].lower() for _, lst in listeners if lst.get("hostname"))
        names.update(UPSTREAM_CERT_NAMES)
        refs: list[tuple[str, str]] = []
        for gw_ns, lst in listeners:
            for ref in (lst.get("tls") or {}).get("certificateRefs") or []:
                if ref.get("group", "") != "" or ref.get("kind", "Secret") != "Secret":
                    raise RunnerError(f"certificateRef {ref} is not a core Secret")
                key = (ref.get("namespace", gw_ns), ref["name"])
                if key not in refs:
                    refs.append(key)
        ordered = sorted(names, key=lambda n: (n.startswith("*"), n))
        ca = CertificateAuthority("Turnout Gateway API conformance CA")
        return cls(ca, ca.issue(*ordered, days=2), ordered, refs)

    def secrets(self) -> list[dict[str, Any]]:
        return [self.leaf.secret(name, ns) for ns, name in self.secret_refs]

    def client_context(self, alpn: Iterable[str] = ("http/1.1",)) -> ssl.SSLContext:
        """Trusts exactly the session CA; no hostname check (see the module docstring)."""
        ctx = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        ctx.check_hostname = False
        ctx.set_alpn_protocols(list(alpn))
        return ctx


# --- echo fleet -----------------------------------------------------------------------------


class WsEcho:
    """WebSocket echo (``/ws`` sends every frame back); other paths answer the JSON echo."""

    def __init__(self, identity: EchoIdentity) -> None:
        self.state = EchoState(identity)
        self.server: Server | None = None

    async def start(self) -> WsEcho:
        self.server = await serve(
            self._handler, "127.0.0.1", 0, process_request=self._process_request
        )
        self.state.port = int(next(iter(self.server.sockets)).getsockname()[1])
        return self

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.state.requests += 1
        self.state.received.append(request.path)
        if request.path.partition("?")[0] == "/ws":
            return None
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.raw_items():
            if name.lower() != "host":
                headers.setdefault(canonical(name.lower()), []).append(value)
        ident = self.state.identity
        doc = {
            "path": request.path,
            "host": request.headers.get("Host", ""),
            "method": "GET",
            "proto": "HTTP/1.1",
            "headers": headers,
            "namespace": ident.namespace,
            "ingress": "",
            "service": ident.service,
            "pod": ident.pod,
            "httpPort": str(self.state.port),
        }
        body = json.dumps(doc).encode() + b"\n"
        return Response(
            200,
            "OK",
            Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))]),
            body,
        )

    @staticmethod
    async def _handler(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass  # the client (or the gateway) went away; nothing to echo

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@dataclass
class EchoFleet:
    """Every local echo instance, by Service and implementation."""

    services: dict[tuple[str, str], ServiceInfo]
    instances: dict[tuple[str, str, str], list[EchoState]] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list)  # run on the background loop
    _thread_closers: list[Any] = field(default_factory=list)  # run from the caller's thread

    @classmethod
    def start(cls, bg: BackgroundLoop, services: list[ServiceInfo]) -> EchoFleet:
        fleet = cls({s.key: s for s in services})
        for svc in services:
            impls = {svc.implementation(p) for p in svc.ports} - {None}
            for impl in sorted(x for x in impls if x):
                states = []
                for i in range(svc.replicas):
                    ident = EchoIdentity(svc.namespace, f"{svc.name}-local-{i}", svc.name)
                    if impl == "http":
                        server, state = bg.run(start_echo(identity=ident))
                        fleet._closers.append(server.close)
                    elif impl == "h2c":
                        h2c = bg.run(H2cEcho(ident).start())
                        state = h2c.state
                        fleet._closers.append(h2c.close)
                    elif impl == "grpc":
                        grpc_echo = GrpcEcho(ident).start()  # grpcio: its own threads
                        state = grpc_echo.state
                        fleet._thread_closers.append(grpc_echo.close)
                    else:
                        ws = bg.run(WsEcho(ident).start())
                        state = ws.state
                        fleet._closers.append(ws.close)
                    states.append(state)
                fleet.instances[(svc.namespace, svc.name, impl)] = states
        return fleet

    def close(self, bg: BackgroundLoop) -> None:
        for closer in self._closers:
            bg.call(closer)
        for closer in self._thread_closers:
            closer()

    def http_instances(self, namespace: str, name: str) -> list[EchoState]:
        return self.instances.get((namespace, name, "http"), [])

    def backends_for(self, test_docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One Backend per locally implemented Service, for the ports this test uses."""
        used = referenced_service_ports(test_docs)
        out = []
        for key, svc in self.services.items():
            if not any(svc.implementation(p) for p in svc.ports):
                continue
            ports = used.get(key) or {8080 if 8080 in svc.ports else min(svc.ports)}
            if len(ports) > 1:
                raise RunnerError(
                    f"Service {key[0]}/{key[1]} is referenced on ports {sorted(ports)}; "
                    "one Backend can stand for one Service port only"
                )
            port = next(iter(ports))
            impl = svc.implementation(port)
            if impl is None:
                raise RunnerError(f"no local endpoint implements Service {key[0]}/{key[1]}:{port}")
            spec: dict[str, Any] = {
                "endpoints": [
                    {"address": f"127.0.0.1:{s.port}", "weight": 1}
                    for s in self.instances[(*key, impl)]
                ]
            }
            if svc.ports[port]:
                spec["appProtocol"] = svc.ports[port]
            out.append(
                {
                    "apiVersion": "turnout.dev/v1alpha1",
                    "kind": "Backend",
                    "metadata": {"name": svc.name, "namespace": svc.namespace},
                    "spec": spec,
                }
            )
        return out


def referenced_service_ports(docs: list[dict[str, Any]]) -> dict[tuple[str, str], set[int]]:
    """(namespace, name) -> ports named by backendRefs / mirror targets of kind Service."""
    used: dict[tuple[str, str], set[int]] = {}

    def note(ref: dict[str, Any], route_ns: str) -> None:
        if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
            return
        if "port" in ref:
            key = (ref.get("namespace", route_ns), ref["name"])
            used.setdefault(key, set()).add(int(ref["port"]))

    for doc in docs:
        if doc.get("kind") not in ("HTTPRoute", "GRPCRoute"):
            continue
        ns = doc["metadata"].get("namespace", "default")
        for rule in doc.get("spec", {}).get("rules") or []:
            filters = list(rule.get("filters") or [])
            for ref in rule.get("backendRefs") or []:
                note(ref, ns)
                filters.extend(ref.get("filters") or [])
            for flt in filters:
                if flt.get("type") == "RequestMirror":
                    note(flt["requestMirror"]["backendRef"], ns)
    return used


# --- manifests ------------------------------------------------------------------------------


def gateway_docs(suite: Suite, docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kubernetes-only kinds dropped; Gateway addresses injected."""
    out = []
    for doc in docs:
        kind = doc.get("kind")
        if kind in K8S_ONLY_KINDS:
            continue
        if kind == "Gateway":
            doc = copy.deepcopy(doc)
            doc["spec"]["gatewayClassName"] = GATEWAY_CLASS
            doc["spec"]["addresses"] = [
                {"type": "IPAddress", "value": suite.addresses[doc["metadata"]["name"]]}
            ]
        out.append(doc)
    return out


def stamp(docs: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Annotate the infra Namespace so every apply changes the configuration."""
    out = copy.deepcopy(docs)
    for doc in out:
        if doc.get("kind") == "Namespace" and doc["metadata"]["name"] == INFRA_NS:
            doc["metadata"].setdefault("annotations", {})["conformance.turnout.dev/apply"] = label
    return out


def check_bindable(bindings: Iterable[tuple[str, int]]) -> None:
    """Fail early, with a clear message, if any Gateway address/port is taken."""
    taken = []
    for host, port in sorted(bindings):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1)
        except OSError as exc:
            taken.append(f"{host}:{port} ({exc.strerror})")
        finally:
            sock.close()
    if taken:
        raise RunnerError(
            "cannot use the conformance Gateway addresses (set TURNOUT_CONFORMANCE_NET to "
            "another 127.x.y prefix, or stop what uses them): " + ", ".join(taken)
        )


# --- the gateway under test -----------------------------------------------------------------


class ConformanceGateway:
    """One ``turnout serve`` for the session; ``apply`` swaps the configuration."""

    def __init__(self, suite: Suite, fleet: EchoFleet, conf_dir: Path, tls: TlsMaterial) -> None:
        self.suite = suite
        self.fleet = fleet
        self.tls = tls
        self.conf_dir = conf_dir
        self.file = conf_dir / "conformance.yaml"
        self.base = [*gateway_docs(suite, suite.base_docs), *tls.secrets()]
        self.proc: TurnoutProcess | None = None
        self.applied: str = ""
        self.reload_log: str = ""
        self._seq = 0
        self._lock = threading.Lock()

    def _write(self, docs: list[dict[str, Any]], label: str) -> None:
        self._seq += 1
        text = yaml.safe_dump_all(stamp(docs, f"{self._seq}-{label}"), sort_keys=False)
        tmp = self.conf_dir / "conformance.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.file)

    def start(self) -> ConformanceGateway:
        docs = [*self.base, *self.fleet.backends_for([])]
        self._write(docs, "base")
        self.proc = TurnoutProcess(self.conf_dir, workers=1, extra_args=["--no-watch"])
        self.proc.start(timeout=30)
        self.applied = "base"
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def address(self, gateway: str) -> str:
        return self.suite.addresses[gateway]

    def apply(self, test: dict[str, Any], timeout: float = 20.0) -> None:
        """Load base + Backends + the test's manifests, and wait until they serve."""
        assert self.proc is not None
        with self._lock:
            test_docs = self.suite.manifests(test)
            docs = [
                *self.base,
                *self.fleet.backends_for(test_docs),
                *gateway_docs(self.suite, test_docs),
            ]
            before = self.proc.status()
            log_offset = len(self.proc.stderr())
            self._write(docs, test["name"])
            self.proc.reload()
            deadline = time.monotonic() + timeout
            while True:
                status = self.proc.status()
                if status["reloads_failed"] > before["reloads_failed"]:
                    self.reload_log = _relevant_log(self.proc.stderr()[log_offset:])
                    raise RunnerError(
                        f"Turnout rejected the manifests of {test['name']}: "
                        f"{status['last_reload_error']}\n{self.reload_log}"
                    )
                if status["revision"] > before["revision"] and status["ready"]:
                    break
                if time.monotonic() > deadline:
                    raise RunnerError(
                        f"Turnout did not serve the manifests of {test['name']} within "
                        f"{timeout}s (status {status})\n{self.proc.stderr()[log_offset:]}"
                    )
                time.sleep(0.02)
            self.reload_log = _relevant_log(self.proc.stderr()[log_offset:])
            self.applied = test["name"]


_LOG_NOISE = re.compile(r"reload \(SIGHUP\)|worker \d+ (started|ready)")


def _relevant_log(text: str) -> str:
    """Problems Turnout logged for a reload (warnings/errors), without routine lines."""
    lines = [
        ln
        for ln in text.splitlines()
        if (" WARNING " in ln or " ERROR " in ln) and not _LOG_NOISE.search(ln)
    ]
    return "\n".join(lines)


def load_suite() -> Suite | None:
    """The suite, or None when its data directory is missing (every item then skips)."""
    if not (SUITE_DIR / "cases.yaml").is_file():
        return None
    return Suite.load(SUITE_DIR)
