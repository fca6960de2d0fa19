"""Checks of ``SecurityPolicy`` and ``Consumer`` objects, and the small parsers the data
plane shares with them (htpasswd files, CIDRs, CORS origins, which algorithms a JWK
may verify).

Everything here is pure: no I/O, no event loop. A bad value gets a located problem
that names what is wrong without echoing secrets (an htpasswd line is named by its
number and user, never by its hash or password).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from turnout.config.model.gateway import GatewayObject
from turnout.config.model.routes import HTTPRouteObject
from turnout.config.model.security import (
    JWT_ALGORITHMS,
    ConsumerObject,
    JWTProviderSpec,
    SecurityPolicyObject,
)
from turnout.config.model.traffic import PolicyTargetRef, TrafficPolicyObject
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.core.durations import parse_duration
from turnout.core.headers import IDENTITY_RESERVED_STR

Path = tuple[str | int, ...]
ObjectId = tuple[str, str]

_HS = frozenset({"HS256", "HS384", "HS512"})
_RSA = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES: Final = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_OKP_CURVES: Final = frozenset({"Ed25519", "Ed448"})
# RFC 7518 §3.2: an HMAC key at least as long as the hash output.
HS_MIN_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.\-]*)://"
    r"(?P<wild>\*\.)?"
    r"(?P<host>[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


# --- shared parsers ---------------------------------------------------------------------


def hash_problem(hashed: str) -> str | None:
    """Why an htpasswd hash is refused, or None for a well-formed bcrypt hash."""
    if _BCRYPT.fullmatch(hashed):
        return None
    if hashed.startswith("{SHA}"):
        return "a {SHA} (SHA-1) hash"
    if hashed.startswith("$apr1$"):
        return "an MD5 (apr1) hash"
    if hashed.startswith("$1$"):
        return "an MD5-crypt hash"
    if hashed.startswith(("$5$", "$6$")):
        return "a SHA-crypt hash"
    if hashed.startswith("$2"):
        return "a malformed bcrypt hash (or a cost outside 04-31)"
    return "a plain-text password or a crypt(3) hash"


def parse_htpasswd(text: str) -> tuple[dict[str, str], list[str]]:
    """``user -> bcrypt hash`` and one message per refused line (by number and user)."""
    users: dict[str, str] = {}
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not user.isprintable():
            errors.append(f"line {number}: expected 'user:bcrypt-hash'")
            continue
        if user in users:
            errors.append(f"line {number}: user {user!r} is listed twice")
            continue
        kind = hash_problem(hashed)
        if kind is not None:
            errors.append(
                f"line {number}: user {user!r} has {kind}; only bcrypt hashes ($2a$, $2b$, "
                "$2y$) are accepted (create them with `htpasswd -B`)"
            )
            continue
        users[user] = hashed
    return users, errors


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr(text: str) -> IPNetwork:
    """``10.0.0.0/8``, ``2001:db8::/32`` or a single address; ``ValueError`` otherwise."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR range") from None


@dataclass(frozen=True, slots=True)
class OriginPattern:
    """A CORS ``allowOrigins`` entry: ``*``, an exact origin, or ``scheme://*.suffix``."""

    any: bool = False
    exact: str = ""  # the lowercase origin when not a wildcard
    scheme: str = ""
    suffix: str = ""  # ".example.com" for "*.example.com"
    port: str = ""  # "" = the scheme's default (the origin names no port)

    def matches(self, origin: str) -> bool:
        if self.any:
            return True
        if self.exact:
            return origin == self.exact
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme != self.scheme:
            return False
        host, _, port = rest.partition(":")
        # a strict subdomain: "*.example.com" matches "a.example.com", not "example.com"
        return port == self.port and host.endswith(self.suffix) and len(host) > len(self.suffix)


def parse_origin(text: str) -> OriginPattern:
    if text == "*":
        return OriginPattern(any=True)
    lowered = text.lower()
    match = _ORIGIN.fullmatch(lowered)
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        raise ValueError(
            f"{text!r} is not an origin: use '*' alone or scheme://host[:port] "
            "(no path; the host may start with '*.')"
        )
    port = match["port"] or ""
    if match["wild"]:
        return OriginPattern(scheme=match["scheme"], suffix="." + match["host"], port=port)
    return OriginPattern(exact=lowered)


def jwk_algorithms(jwk: dict[str, Any], allowed: Iterable[str]) -> list[str]:
    """The allowed algorithms this JWK can verify: by its type and curve, narrowed to
    its own ``alg`` when it names one; none for encryption keys."""
    if jwk.get("use") not in (None, "sig"):
        return []
    ops = jwk.get("key_ops")
    if isinstance(ops, list) and "verify" not in ops:
        return []
    kty = jwk.get("kty")
    if kty == "RSA":
        fits: set[str] = set(_RSA)
    elif kty == "EC":
        alg = _EC_CURVES.get(str(jwk.get("crv")))
        fits = {alg} if alg else set()
    elif kty == "OKP":
        fits = {"EdDSA"} if jwk.get("crv") in _OKP_CURVES else set()
    elif kty == "oct":
        fits = set(_HS)
    else:
        fits = set()
    declared = jwk.get("alg")
    if declared is not None:
        fits &= {declared} if isinstance(declared, str) else set()
    return [a for a in allowed if a in fits]


def load_jwks_document(text: str) -> list[dict[str, Any]]:
    """The ``keys`` of a JWKS JSON document; ``ValueError`` when it is not one."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError("not valid JSON") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise ValueError('expected a JWKS document: {"keys": [{...}, ...]}')
    return keys


# --- SecurityPolicy -----------------------------------------------------------------------


def check_target_refs(
    res: Resource,
    refs: tuple[PolicyTargetRef, ...],
    namespace: str,
    gateways: dict[ObjectId, GatewayObject],
    routes: dict[ObjectId, HTTPRouteObject],
    problems: list[Problem],
) -> None:
    """Missing targets are warnings: the policy applies once they exist."""
    for i, ref in enumerate(refs):
        path: Path = ("spec", "targetRefs", i)
        if ref.kind == "Gateway":
            gw = gateways.get((namespace, ref.name))
            if gw is None:
                problems.append(
                    res.problem(
                        (*path, "name"), f"Gateway {namespace}/{ref.name} does not exist", "warning"
                    )
                )
            elif ref.section_name and ref.section_name not in {
                lst.name for lst in gw.spec.listeners
            }:
                problems.append(
                    res.problem(
                        (*path, "sectionName"),
                        f"Gateway {namespace}/{ref.name} has no listener {ref.section_name!r}",
                        "warning",
                    )
                )
        else:
            route = routes.get((namespace, ref.name))
            if route is None:
                problems.append(
                    res.problem(
                        (*path, "name"),
                        f"HTTPRoute {namespace}/{ref.name} does not exist",
                        "warning",
                    )
                )
            elif ref.section_name and ref.section_name not in {
                r.name for r in route.spec.rules if r.name
            }:
                problems.append(
                    res.problem(
                        (*path, "sectionName"),
                        f"HTTPRoute {namespace}/{ref.name} has no rule named {ref.section_name!r}",
                        "warning",
                    )
                )


def check_security_policy(
    res: Resource,
    policy: SecurityPolicyObject,
    gateways: dict[ObjectId, GatewayObject],
    routes: dict[ObjectId, HTTPRouteObject],
    consumers: dict[ObjectId, ConsumerObject],
    problems: list[Problem],
) -> None:
    ns = policy.metadata.namespace
    spec = policy.spec
    check_target_refs(res, spec.target_refs, ns, gateways, routes, problems)
    add = problems.append
    identity_headers: list[tuple[Path, str]] = []
    if spec.jwt is not None:
        names: set[str] = set()
        for i, provider in enumerate(spec.jwt.providers):
            path: Path = ("spec", "jwt", "providers", i)
            if provider.name in names:
                add(res.problem((*path, "name"), f"duplicate provider name {provider.name!r}"))
            names.add(provider.name)
            _check_provider(res, provider, path, problems)
            for c, claim in enumerate(provider.claim_to_headers):
                identity_headers.append(((*path, "claimToHeaders", c, "header"), claim.header))
    key_auth = spec.api_key_auth
    if key_auth is not None:
        for i, source in enumerate(key_auth.extract_from):
            given = [n for n in (source.header, source.query, source.cookie) if n is not None]
            if len(given) != 1:
                add(
                    res.problem(
                        ("spec", "apiKeyAuth", "extractFrom", i),
                        "give exactly one of header, query or cookie",
                    )
                )
        if key_auth.forward_consumer_header is not None:
            identity_headers.append(
                (("spec", "apiKeyAuth", "forwardConsumerHeader"), key_auth.forward_consumer_header)
            )
        if not any(c.spec.api_keys for (c_ns, _), c in consumers.items() if c_ns == ns):
            add(
                res.problem(
                    ("spec", "apiKeyAuth"),
                    f"no Consumer in namespace {ns!r} has apiKeys: every API key is refused",
                    "warning",
                )
            )
    if spec.basic_auth is not None:
        users, errors = parse_htpasswd(spec.basic_auth.users.inline)
        for message in errors:
            add(res.problem(("spec", "basicAuth", "users", "inline"), message))
        if not users and not errors:
            add(
                res.problem(
                    ("spec", "basicAuth", "users", "inline"),
                    "no users: every request is refused",
                    "warning",
                )
            )
    seen: set[str] = set()
    for path, header in identity_headers:
        lowered = header.lower()
        if lowered in IDENTITY_RESERVED_STR:
            add(res.problem(path, f"header {lowered!r} cannot carry an identity"))
        elif lowered in seen:
            add(res.problem(path, f"header {lowered!r} is set twice"))
        seen.add(lowered)
    _check_authorization(res, policy, consumers, problems)
    _check_network(res, policy, problems)
    _check_cors(res, policy, problems)
    brute = spec.brute_force
    if brute is not None:
        if not (spec.jwt or spec.api_key_auth or spec.basic_auth):
            add(
                res.problem(
                    ("spec", "bruteForce"),
                    "bruteForce counts failed authentications: give jwt, apiKeyAuth or basicAuth",
                )
            )
        if brute.by_consumer and not spec.basic_auth:
            add(
                res.problem(
                    ("spec", "bruteForce", "byConsumer"),
                    "byConsumer locks users whose password is refused: give basicAuth",
                )
            )
        for field, value in (("window", brute.window), ("banFor", brute.ban_for)):
            if parse_duration(value) <= 0:
                add(res.problem(("spec", "bruteForce", field), "must be longer than 0s"))
    if not any(
        (
            spec.client_certificate is not None,
            spec.jwt,
            spec.api_key_auth,
            spec.basic_auth,
            spec.authorization,
            spec.ip_rules,
            spec.cors,
            spec.response_headers,
            spec.ext_auth,
        )
    ):
        add(
            res.problem(
                ("spec",),
                "the policy sets nothing (clientCertificate, jwt, apiKeyAuth, basicAuth, "
                "authorization, ipRules, cors, responseHeaders or extAuth)",
                "warning",
            )
        )


def _check_provider(
    res: Resource, provider: JWTProviderSpec, path: Path, problems: list[Problem]
) -> None:
    add = problems.append
    algorithms = provider.algorithms
    for a, alg in enumerate(algorithms):
        if alg.lower() == "none":
            add(res.problem((*path, "algorithms", a), "algorithm 'none' is never allowed"))
        elif alg not in JWT_ALGORITHMS:
            add(
                res.problem(
                    (*path, "algorithms", a),
                    f"unknown algorithm {alg!r}; use {', '.join(sorted(JWT_ALGORITHMS))}",
                )
            )
    if len(set(algorithms)) != len(algorithms):
        add(res.problem((*path, "algorithms"), "algorithms must be unique"))
    remote, local = provider.remote_jwks, provider.local_jwks
    if (remote is None) == (local is None):
        add(res.problem(path, "give exactly one of remoteJWKS or localJWKS"))
    hs = [a for a in algorithms if a in _HS]
    if remote is not None:
        if hs:
            add(
                res.problem(
                    (*path, "algorithms"),
                    f"{hs[0]} verifies with a shared secret, which only localJWKS 'oct' keys "
                    "provide; a remote JWKS publishes public keys only",
                )
            )
        if parse_duration(remote.cache_duration) < 1:
            add(
                res.problem(
                    (*path, "remoteJWKS", "cacheDuration"), "cacheDuration must be at least 1s"
                )
            )
    if local is not None:
        _check_local_jwks(
            res, local.inline, algorithms, hs, (*path, "localJWKS", "inline"), problems
        )
    if provider.extract_from is not None:
        ext = provider.extract_from
        if not (ext.headers or ext.cookies or ext.params):
            add(res.problem((*path, "extractFrom"), "name at least one header, cookie or param"))


def _check_local_jwks(
    res: Resource,
    text: str,
    algorithms: tuple[str, ...],
    hs: list[str],
    path: Path,
    problems: list[Problem],
) -> None:
    add = problems.append
    try:
        keys = load_jwks_document(text)
    except ValueError as exc:
        add(res.problem(path, f"localJWKS: {exc}"))
        return
    import jwt  # PyJWT: only when a manifest carries keys (keeps `turnout check` light)

    usable = 0
    has_oct = False
    for k, jwk in enumerate(keys):
        label = f"key {k}" + (f" (kid {jwk['kid']!r})" if isinstance(jwk.get("kid"), str) else "")
        fits = jwk_algorithms(jwk, algorithms)
        if jwk.get("kty") == "oct":
            has_oct = True
        for alg in fits:
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
                # PyJWT's messages may quote the key; say only what kind of problem it is
                add(res.problem(path, f"localJWKS {label} cannot be loaded ({type(exc).__name__})"))
                break
            secret = key.key
            if (
                alg in HS_MIN_BYTES
                and isinstance(secret, bytes)
                and len(secret) < HS_MIN_BYTES[alg]
            ):
                add(
                    res.problem(
                        path,
                        f"localJWKS {label}: {alg} needs a secret of at least "
                        f"{HS_MIN_BYTES[alg]} bytes",
                    )
                )
                break
            usable += 1
    if hs and not has_oct:
        add(
            res.problem(
                path,
                f"{hs[0]} is allowed but the localJWKS has no 'oct' (shared secret) key",
            )
        )
    if not usable:
        add(res.problem(path, "localJWKS has no key usable with the allowed algorithms", "warning"))


def _check_authorization(
    res: Resource,
    policy: SecurityPolicyObject,
    consumers: dict[ObjectId, ConsumerObject],
    problems: list[Problem],
) -> None:
    authz = policy.spec.authorization
    if authz is None:
        return
    ns = policy.metadata.namespace
    providers = {p.name for p in policy.spec.jwt.providers} if policy.spec.jwt else set()
    for i, rule in enumerate(authz.rules):
        path: Path = ("spec", "authorization", "rules", i, "principal")
        pr = rule.principal
        if not (pr.consumers or pr.groups or pr.jwt or pr.client_cidrs):
            problems.append(
                res.problem(path, "a principal needs consumers, groups, jwt or clientCIDRs")
            )
        for c, name in enumerate(pr.consumers):
            if (ns, name) not in consumers:
                problems.append(
                    res.problem(
                        (*path, "consumers", c),
                        f"Consumer {ns}/{name} does not exist "
                        "(a basic-auth user or a JWT subject of that name still matches)",
                        "warning",
                    )
                )
        if pr.jwt is not None:
            if policy.spec.jwt is None:
                problems.append(
                    res.problem((*path, "jwt"), "a jwt principal needs jwt authentication")
                )
            elif pr.jwt.provider is not None and pr.jwt.provider not in providers:
                problems.append(
                    res.problem(
                        (*path, "jwt", "provider"), f"no JWT provider named {pr.jwt.provider!r}"
                    )
                )
            if not (pr.jwt.claims or pr.jwt.scopes or pr.jwt.provider):
                problems.append(
                    res.problem((*path, "jwt"), "name a provider, claims or scopes to match")
                )
        _check_cidrs(res, pr.client_cidrs, (*path, "clientCIDRs"), problems)


def _check_cidrs(
    res: Resource, values: tuple[str, ...], path: Path, problems: list[Problem]
) -> None:
    for i, value in enumerate(values):
        try:
            parse_cidr(value)
        except ValueError as exc:
            problems.append(res.problem((*path, i), str(exc)))


def _check_network(res: Resource, policy: SecurityPolicyObject, problems: list[Problem]) -> None:
    rules = policy.spec.ip_rules
    if rules is not None:
        _check_cidrs(res, rules.allow, ("spec", "ipRules", "allow"), problems)
        _check_cidrs(res, rules.deny, ("spec", "ipRules", "deny"), problems)
        if not rules.allow and not rules.deny:
            problems.append(res.problem(("spec", "ipRules"), "give allow, deny or both"))
    detect = policy.spec.client_ip_detection
    if detect is not None and detect.x_forwarded_for is None:
        problems.append(
            res.problem(("spec", "clientIPDetection"), "give xForwardedFor.numTrustedHops")
        )


def _check_cors(res: Resource, policy: SecurityPolicyObject, problems: list[Problem]) -> None:
    cors = policy.spec.cors
    if cors is None:
        return
    base: Path = ("spec", "cors")
    for i, origin in enumerate(cors.allow_origins):
        try:
            parse_origin(origin)
        except ValueError as exc:
            problems.append(res.problem((*base, "allowOrigins", i), str(exc)))
    if "*" in cors.allow_origins and len(cors.allow_origins) > 1:
        problems.append(res.problem((*base, "allowOrigins"), "'*' must be the only origin"))
    if "*" in cors.allow_origins and cors.allow_credentials:
        problems.append(
            res.problem(
                (*base, "allowOrigins"),
                "'*' with allowCredentials lets every site make credentialed requests "
                "(the gateway answers with the caller's origin, never '*'); list the origins",
                "warning",
            )
        )
    fields: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("allowMethods", cors.allow_methods),
        ("allowHeaders", cors.allow_headers),
        ("exposeHeaders", cors.expose_headers),
    )
    for name, values in fields:
        for i, value in enumerate(values):
            if value != "*" and not _TOKEN.fullmatch(value):
                problems.append(
                    res.problem((*base, name, i), f"{value!r} is not a method or header name")
                )


# --- Consumer -----------------------------------------------------------------------------


def check_consumers(resources: Iterable[Resource], problems: list[Problem]) -> None:
    """A key (its hash) may belong to one Consumer of a namespace only."""
    owners: dict[tuple[str, str], str] = {}
    for res in resources:
        consumer = res.obj
        if not isinstance(consumer, ConsumerObject):
            continue
        ns = consumer.metadata.namespace
        for i, key in enumerate(consumer.spec.api_keys):
            owner = owners.setdefault((ns, key.sha256), consumer.metadata.name)
            if owner != consumer.metadata.name or any(
                k.sha256 == key.sha256 for k in consumer.spec.api_keys[:i]
            ):
                problems.append(
                    res.problem(
                        ("spec", "apiKeys", i),
                        f"this key is also a key of Consumer {ns}/{owner}",
                    )
                )


# --- rate-limit keys that need an identity --------------------------------------------------


def _authenticates(policy: SecurityPolicyObject, key_type: str) -> bool:
    spec = policy.spec
    if key_type == "JWTClaim":
        return spec.jwt is not None
    return any((spec.jwt, spec.api_key_auth, spec.basic_auth))


def _covers(
    sp: SecurityPolicyObject,
    ref: PolicyTargetRef,
    routes: dict[ObjectId, HTTPRouteObject],
) -> bool:
    """Whether ``sp`` applies to everything ``ref`` (a TrafficPolicy target) names: the
    same object (all of it, or the same section), or the Gateway a route attaches to."""
    ns = sp.metadata.namespace
    for own in sp.spec.target_refs:
        if own.kind == ref.kind:
            if own.name == ref.name and own.section_name in (None, ref.section_name):
                return True
        elif own.kind == "Gateway":
            route = routes.get((ns, ref.name))
            if route is None:
                continue
            for parent in route.spec.parent_refs:
                if (
                    parent.kind == "Gateway"
                    and parent.name == own.name
                    and (parent.namespace or ns) == ns
                    and own.section_name in (None, parent.section_name)
                ):
                    return True
    return False


def rate_limit_key_problem(
    key_type: str,
    policy: TrafficPolicyObject,
    security: list[SecurityPolicyObject],
    routes: dict[ObjectId, HTTPRouteObject],
) -> str | None:
    """Why a ``Consumer`` / ``JWTClaim`` rate-limit key cannot work for ``policy``: some
    target of it is covered by no SecurityPolicy that authenticates (with jwt, for
    JWTClaim). None when every target is covered."""
    ns = policy.metadata.namespace
    same_ns = [sp for sp in security if sp.metadata.namespace == ns]
    need = "jwt authentication" if key_type == "JWTClaim" else "authentication"
    for ref in policy.spec.target_refs:
        if not any(_authenticates(sp, key_type) and _covers(sp, ref, routes) for sp in same_ns):
            target = f"{ref.kind} {ns}/{ref.name}" + (
                f" (section {ref.section_name})" if ref.section_name else ""
            )
            return (
                f"rate-limit keys of type {key_type} need a SecurityPolicy with {need} "
                f"(jwt, apiKeyAuth or basicAuth) on the same target; none covers {target}"
                if key_type == "Consumer"
                else f"rate-limit keys of type {key_type} need a SecurityPolicy with {need} "
                f"on the same target; none covers {target}"
            )
    return None
