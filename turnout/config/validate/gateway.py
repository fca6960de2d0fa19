"""Gateway checks: listeners (names, protocols, port and hostname conflicts, allowed
route kinds), TLS and Passthrough settings with the certificates they load, L4 ports and
annotations, and addresses."""

from __future__ import annotations

import ipaddress

from turnout.config.attach import ROUTE_KINDS_BY_PROTOCOL
from turnout.config.model.base import GATEWAY_GROUP
from turnout.config.model.gateway import (
    L4_IDLE_TIMEOUT_ANNOTATION,
    L4_MAX_CONNECTIONS_ANNOTATION,
    TLS_CERT_FILE_OPTION,
    TLS_KEY_FILE_OPTION,
    TRACE_BOOLEANS,
    TRACE_KEEP_ERRORS_ANNOTATION,
    TRACE_SAMPLE_RATIO_ANNOTATION,
    GatewayObject,
    GatewayTLSConfig,
    trace_ratio,
)
from turnout.config.model.kubernetes import SecretObject
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.config.tls import (
    TLSMaterialError,
    client_ca,
    expired,
    listener_certificates,
    listener_policy,
)
from turnout.core.durations import parse_duration

SUPPORTED_LISTENER_PROTOCOLS = frozenset({"HTTP", "HTTPS", "TCP", "TLS"})
# Listener protocols served by piping bytes (docs/l4.md) rather than parsing HTTP
L4_PROTOCOLS = frozenset({"TCP", "TLS"})


def validate_gateway(
    res: Resource,
    gw: GatewayObject,
    secrets: dict[tuple[str, str], SecretObject],
    problems: list[Problem],
) -> None:
    """Listeners, L4 ports and annotations and addresses, then listener TLS."""
    _check_gateway(res, gw, problems)
    _check_tls(res, gw, secrets, problems)


def _check_tls(
    res: Resource,
    gw: GatewayObject,
    secrets: dict[tuple[str, str], SecretObject],
    problems: list[Problem],
) -> None:
    """HTTPS listeners: TLS settings Turnout implements, certificates that load, and no
    port shared with a plain-HTTP listener (one socket speaks TLS or does not)."""
    protocols: dict[int, str] = {}
    for i, lst in enumerate(gw.spec.listeners):
        base = ("spec", "listeners", i)
        if lst.protocol not in ("HTTP", "HTTPS"):
            continue
        first = protocols.setdefault(lst.port, lst.protocol)
        if first != lst.protocol:
            problems.append(
                res.problem(
                    (*base, "protocol"),
                    f"port {lst.port} has both HTTP and HTTPS listeners; one port is either "
                    "plain or TLS",
                )
            )
        if lst.protocol != "HTTPS":
            continue
        tls = lst.tls
        if tls is None:
            problems.append(res.problem((*base, "tls"), "an HTTPS listener needs tls settings"))
            continue
        if tls.mode != "Terminate":
            problems.append(
                res.problem(
                    (*base, "tls", "mode"),
                    "HTTPS listeners terminate TLS; Passthrough is for TLS listeners "
                    "(protocol: TLS, with TLSRoutes)",
                )
            )
            continue
        try:
            client_ca(tls, gw.metadata.namespace, secrets)
        except TLSMaterialError as exc:
            problems.append(res.problem((*base, "tls", *exc.field), str(exc)))
        try:
            listener_policy(tls)
        except TLSMaterialError as exc:
            problems.append(res.problem((*base, "tls", *exc.field), str(exc)))
        try:
            certs = listener_certificates(tls, gw.metadata.namespace, secrets)
        except TLSMaterialError as exc:
            problems.append(res.problem((*base, "tls", *exc.field), str(exc)))
            continue
        if not certs:
            problems.append(
                res.problem(
                    (*base, "tls", "certificateRefs"),
                    "an HTTPS listener needs a certificate: certificateRefs to a "
                    f"kubernetes.io/tls Secret, or tls.options {TLS_CERT_FILE_OPTION!r} and "
                    f"{TLS_KEY_FILE_OPTION!r}",
                )
            )
        for cert in certs:
            if expired(cert):
                problems.append(
                    res.problem(
                        (*base, "tls"),
                        f"{cert.source}: the certificate expired on {cert.not_after:%Y-%m-%d}",
                        "warning",
                    )
                )


def _check_gateway(res: Resource, gw: GatewayObject, problems: list[Problem]) -> None:
    names: set[str] = set()
    bindings: dict[tuple[int, str | None], str] = {}
    for i, lst in enumerate(gw.spec.listeners):
        base = ("spec", "listeners", i)
        if lst.name in names:
            problems.append(res.problem((*base, "name"), f"duplicate listener name {lst.name!r}"))
        names.add(lst.name)
        if lst.protocol not in SUPPORTED_LISTENER_PROTOCOLS:
            problems.append(
                res.problem(
                    (*base, "protocol"),
                    f"listener protocol {lst.protocol!r} is not supported yet "
                    "(supported: HTTP, HTTPS, TCP, TLS)",
                )
            )
        if lst.tls is not None and lst.protocol in ("HTTP", "TCP"):
            problems.append(
                res.problem(
                    (*base, "tls"),
                    "tls must not be set on an HTTP listener"
                    if lst.protocol == "HTTP"
                    else "tls must not be set on a TCP listener",
                )
            )
        if lst.protocol == "TLS":
            _check_passthrough(res, lst.tls, base, problems)
        other = bindings.get((lst.port, lst.hostname))
        if other is not None:
            problems.append(
                res.problem(
                    (*base, "port"),
                    f"listener conflicts with {other!r}: same port {lst.port} and hostname",
                )
            )
        bindings[(lst.port, lst.hostname)] = lst.name
        ns_from = lst.allowed_routes.namespaces
        if ns_from.from_ == "Selector" and ns_from.selector is None:
            problems.append(
                res.problem(
                    (*base, "allowedRoutes", "namespaces", "selector"),
                    "from: Selector requires a selector",
                )
            )
        carried = ROUTE_KINDS_BY_PROTOCOL.get(lst.protocol, ())
        for k, kind in enumerate(lst.allowed_routes.kinds):
            if carried and (kind.group != GATEWAY_GROUP or kind.kind not in carried):
                shown = "HTTP" if lst.protocol == "HTTPS" else lst.protocol
                problems.append(
                    res.problem(
                        (*base, "allowedRoutes", "kinds", k),
                        f"route kind {kind.group}/{kind.kind} is not supported on {shown} "
                        "listeners",
                    )
                )
    _check_l4_ports(res, gw, problems)
    for i, addr in enumerate(gw.spec.addresses):
        path = ("spec", "addresses", i)
        if addr.type != "IPAddress":
            problems.append(
                res.problem(
                    (*path, "type"), f"address type {addr.type!r} is not supported (use IPAddress)"
                )
            )
            continue
        try:
            ipaddress.ip_address(addr.value)
        except ValueError:
            problems.append(res.problem((*path, "value"), f"{addr.value!r} is not an IP address"))


def _check_passthrough(
    res: Resource,
    tls: GatewayTLSConfig | None,
    base: tuple[str | int, ...],
    problems: list[Problem],
) -> None:
    if tls is None or tls.mode != "Passthrough":
        problems.append(
            res.problem(
                (*base, "tls", "mode"),
                "TLS listeners need tls.mode: Passthrough (terminating TLS on a TLS listener "
                "is not supported yet; use an HTTPS listener to terminate)",
            )
        )
        return
    if tls.certificate_refs:
        problems.append(
            res.problem(
                (*base, "tls", "certificateRefs"),
                "a Passthrough listener does not terminate TLS: certificateRefs are unused",
                "warning",
            )
        )


def _check_l4_ports(res: Resource, gw: GatewayObject, problems: list[Problem]) -> None:
    """One port is HTTP(S) or L4, and one L4 protocol (a TCP port pipes every byte; a TLS
    port reads the ClientHello first); and the Gateway's L4 annotations parse."""
    seen: dict[int, str] = {}
    for i, lst in enumerate(gw.spec.listeners):
        if lst.protocol not in SUPPORTED_LISTENER_PROTOCOLS:
            continue
        family = lst.protocol if lst.protocol in L4_PROTOCOLS else "HTTP(S)"
        if family == "TCP" and seen.get(lst.port) == "TCP":
            # TCP has nothing (no host name) to tell two listeners of one port apart
            problems.append(
                res.problem(
                    ("spec", "listeners", i, "port"), f"port {lst.port} has two TCP listeners"
                )
            )
            continue
        first = seen.setdefault(lst.port, family)
        if first != family:
            problems.append(
                res.problem(
                    ("spec", "listeners", i, "protocol"),
                    f"port {lst.port} has both {first} and {family} listeners; a port carries "
                    "HTTP(S), TCP or TLS passthrough, not a mix",
                )
            )
    notes = gw.metadata.annotations
    idle = notes.get(L4_IDLE_TIMEOUT_ANNOTATION)
    if idle is not None:
        try:
            if parse_duration(idle) <= 0:
                raise ValueError("must be positive")
        except ValueError as exc:
            problems.append(
                res.problem(
                    ("metadata", "annotations", L4_IDLE_TIMEOUT_ANNOTATION),
                    f"{idle!r} is not a positive duration ({exc})",
                )
            )
    cap = notes.get(L4_MAX_CONNECTIONS_ANNOTATION)
    if cap is not None and not (cap.isdigit() and 0 < int(cap) <= 10_000_000):
        problems.append(
            res.problem(
                ("metadata", "annotations", L4_MAX_CONNECTIONS_ANNOTATION),
                f"{cap!r} is not a whole number of connections between 1 and 10000000",
            )
        )
    ratio = notes.get(TRACE_SAMPLE_RATIO_ANNOTATION)
    if ratio is not None:
        try:
            trace_ratio(ratio)
        except ValueError:
            problems.append(
                res.problem(
                    ("metadata", "annotations", TRACE_SAMPLE_RATIO_ANNOTATION),
                    f"{ratio!r} is not a sampling ratio: give a number from 0 to 1",
                )
            )
    keep = notes.get(TRACE_KEEP_ERRORS_ANNOTATION)
    if keep is not None and keep not in TRACE_BOOLEANS:
        problems.append(
            res.problem(
                ("metadata", "annotations", TRACE_KEEP_ERRORS_ANNOTATION),
                f'{keep!r} is neither "true" nor "false"',
            )
        )
