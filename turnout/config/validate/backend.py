"""Backend checks: load balancer (consistent hash), health checks, retry, upstream TLS
material, and protocol combinations not supported yet."""

from __future__ import annotations

from turnout.config.model.backend import BackendObject
from turnout.config.model.kubernetes import SecretObject
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.config.tls import TLSMaterialError, backend_tls
from turnout.core.durations import parse_duration

# Backend appProtocols spoken as HTTP/2 with prior knowledge (h2c)
HTTP2_APP_PROTOCOLS = frozenset({"h2c", "kubernetes.io/h2c", "grpc"})


def validate_backend(
    res: Resource,
    backend: BackendObject,
    secrets: dict[tuple[str, str], SecretObject],
    problems: list[Problem],
) -> None:
    """Protocol and resilience settings, then upstream TLS material."""
    _check_backend(res, backend, problems)
    _check_backend_tls(res, backend, secrets, problems)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    f = 2
    while f * f <= n:
        if n % f == 0:
            return False
        f += 1
    return True


_HASH_FIELD = {"Header": "header", "Cookie": "cookie", "QueryParameter": "queryParameter"}


def _check_resilience(res: Resource, backend: BackendObject, problems: list[Problem]) -> None:
    spec = backend.spec
    lb = spec.load_balancer
    base = ("spec", "loadBalancer")
    ch = lb.consistent_hash
    if lb.type == "ConsistentHash":
        if ch is None:
            problems.append(
                res.problem((*base, "consistentHash"), "type ConsistentHash needs consistentHash")
            )
        else:
            wanted = _HASH_FIELD.get(ch.type)
            given = {"header": ch.header, "cookie": ch.cookie, "queryParameter": ch.query_parameter}
            if wanted is not None and given[wanted] is None:
                problems.append(
                    res.problem(
                        (*base, "consistentHash", wanted),
                        f"consistentHash type {ch.type} needs {wanted}",
                    )
                )
            for name, value in given.items():
                if value is not None and name != wanted:
                    problems.append(
                        res.problem(
                            (*base, "consistentHash", name),
                            f"{name} does not apply to consistentHash type {ch.type}",
                        )
                    )
            if not _is_prime(ch.table_size):
                problems.append(
                    res.problem(
                        (*base, "consistentHash", "tableSize"),
                        f"tableSize {ch.table_size} must be a prime number (e.g. 65537)",
                    )
                )
    elif ch is not None:
        problems.append(
            res.problem(
                (*base, "consistentHash"), f"consistentHash does not apply to type {lb.type}"
            )
        )
    hc = spec.health_check
    if hc is not None and hc.active is not None:
        if parse_duration(hc.active.timeout) >= parse_duration(hc.active.interval):
            problems.append(
                res.problem(
                    ("spec", "healthCheck", "active", "timeout"),
                    "the check timeout must be shorter than its interval",
                )
            )
        if parse_duration(hc.active.interval) < 0.05:
            problems.append(
                res.problem(
                    ("spec", "healthCheck", "active", "interval"), "the interval must be ≥ 50ms"
                )
            )
    if hc is not None and hc.passive is not None:
        p = hc.passive
        if p.consecutive_5xx_errors == 0 and p.consecutive_gateway_errors == 0:
            problems.append(
                res.problem(
                    ("spec", "healthCheck", "passive"),
                    "both consecutive5XxErrors and consecutiveGatewayErrors are 0: "
                    "nothing will ever be ejected",
                    "warning",
                )
            )
        if parse_duration(p.max_ejection_time) < parse_duration(p.base_ejection_time):
            problems.append(
                res.problem(
                    ("spec", "healthCheck", "passive", "maxEjectionTime"),
                    "maxEjectionTime must not be shorter than baseEjectionTime",
                )
            )
    retry = spec.retry
    if retry is not None:
        triggers = retry.retry_on.triggers
        if retry.retry_on.http_status_codes and "retriable-status-codes" not in triggers:
            problems.append(
                res.problem(
                    ("spec", "retry", "retryOn", "triggers"),
                    "httpStatusCodes are only used with the 'retriable-status-codes' trigger",
                    "warning",
                )
            )
        if "refused-stream" in triggers:
            problems.append(
                res.problem(
                    ("spec", "retry", "retryOn", "triggers"),
                    "'refused-stream' applies to HTTP/2 upstreams, which are not supported yet",
                    "warning",
                )
            )


def _check_backend_tls(
    res: Resource,
    backend: BackendObject,
    secrets: dict[tuple[str, str], SecretObject],
    problems: list[Problem],
) -> None:
    spec = backend.spec.tls
    if spec is None:
        return
    try:
        backend_tls(spec, backend.metadata.namespace, secrets)
    except TLSMaterialError as exc:
        problems.append(res.problem(("spec", "tls", *exc.field), str(exc)))
        return
    if spec.insecure_skip_verify:
        problems.append(
            res.problem(
                ("spec", "tls", "insecureSkipVerify"),
                "upstream certificates are not verified: anyone on the path can impersonate "
                "this backend",
                "warning",
            )
        )


def _check_backend(res: Resource, backend: BackendObject, problems: list[Problem]) -> None:
    if backend.spec.app_protocol in HTTP2_APP_PROTOCOLS and backend.spec.tls is not None:
        problems.append(
            res.problem(
                ("spec", "tls"),
                f"appProtocol {backend.spec.app_protocol} is HTTP/2 in clear text (h2c); "
                "HTTP/2 over TLS to upstreams is not supported yet",
            )
        )
    _check_resilience(res, backend, problems)
