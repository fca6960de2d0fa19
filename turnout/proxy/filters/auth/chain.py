"""A ``SecurityPolicy`` compiled into one ``AuthFilter``, and what it decides.

``AuthFilter.check(head, peer, loop)`` runs once per request, after routing and before
rate limits (so limits can count by Consumer or JWT claim). In order:

1. identity headers the policy sets (``claimToHeaders``, ``forwardConsumerHeader``)
   are removed from the request, so a client cannot forge them;
2. IP rules on the client address (socket peer, or X-Forwarded-For behind trusted
   hops) — 403;
3. a CORS preflight is answered (204) — before authentication, as browsers send no
   credentials on a preflight;
4. authentication: the first credential present, in the order JWT, API key, Basic,
   decides (an invalid one is a 401, never a fall-back to another method); none at all
   is a 401 with a challenge per configured method, unless ``jwt.optional``;
5. authorization rules (first match wins, else ``defaultAction``) — 403;
6. on success the identity headers are added and the principal is returned for rate
   limits; response headers (CORS, security headers) ride along.

The answer is an ``AuthVerdict``, or — when a JWKS must be fetched or a password
checked with bcrypt — a coroutine that produces one (the exchange waits for it the way
it waits for Redis rate limits). Nothing secret is ever put in a verdict: messages
name what was wrong, never the token, key or password.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Final

from turnout.config.model.security import (
    AuthorizationPrincipal,
    AuthorizationSpec,
    ConsumerObject,
    SecurityPolicyObject,
)
from turnout.proxy.filters.auth.apikeys import APIKeyTable
from turnout.proxy.filters.auth.basic import MALFORMED, BasicAuth
from turnout.proxy.filters.auth.cors import CORSPolicy
from turnout.proxy.filters.auth.headers import ResponseHeaders, security_headers
from turnout.proxy.filters.auth.ipranges import ClientAddress, IPAddress, IPRules, NetworkSet
from turnout.proxy.filters.auth.jwt import Fetching, JWTAuth, JWTOutcome, JWTProvider, Refused
from turnout.proxy.protocols.heads import Headers, RequestHead

log = logging.getLogger("turnout.auth")

BEARER: Final = b'Bearer realm="turnout"'
BEARER_INVALID: Final = b'Bearer realm="turnout", error="invalid_token"'
BASIC: Final = b'Basic realm="turnout"'
APIKEY: Final = b'ApiKey realm="turnout"'
WWW_AUTHENTICATE: Final = b"www-authenticate"
UNAUTHORIZED: Final = b"unauthorized"
FORBIDDEN: Final = b"forbidden"


# 401s for a credential that is missing, not wrong (bruteForce does not count them: a
# browser's first request to a Basic-protected page is one)
NO_CREDENTIALS: Final = b"authentication is required"
NO_CERTIFICATE: Final = b"a client certificate is required"
MISSING_CREDENTIALS: Final = frozenset({NO_CREDENTIALS, NO_CERTIFICATE})


class Principal:
    """Who made the request: a Consumer name (API key), a Basic user, or a JWT subject;
    the groups of the Consumer of that name; the JWT claims."""

    __slots__ = ("claims", "consumer", "consumer_key", "groups", "provider")

    def __init__(
        self,
        consumer: str | None,
        groups: frozenset[str] = frozenset(),
        claims: dict[str, Any] | None = None,
        provider: str | None = None,
    ) -> None:
        self.consumer = consumer
        self.consumer_key = consumer.encode() if consumer is not None else None
        self.groups = groups
        self.claims = claims
        self.provider = provider

    def __repr__(self) -> str:
        return f"<Principal {self.consumer!r} groups={sorted(self.groups)}>"


class AuthVerdict:
    """``status`` 0: go on (with ``principal`` and the ``response`` headers to set);
    otherwise answer locally with ``status``, ``code``, ``message`` and ``headers``
    (an empty ``code`` means no body: the 204 of a preflight)."""

    __slots__ = ("code", "headers", "message", "principal", "response", "status")

    def __init__(
        self,
        status: int,
        code: bytes = b"",
        message: bytes = b"",
        headers: Headers | None = None,
        principal: Principal | None = None,
        response: ResponseHeaders | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers: Headers = headers if headers is not None else []
        self.principal = principal
        self.response = response


Step = Principal | AuthVerdict | None  # None: anonymous (optional JWT, no token)


class _Pending:
    """An authentication step that must wait: ``resume(await wait())`` continues it."""

    __slots__ = ("resume", "wait")

    def __init__(
        self, wait: Callable[[], Awaitable[Any]], resume: Callable[[Any], Step | _Pending]
    ) -> None:
        self.wait = wait
        self.resume = resume


# -- authorization -----------------------------------------------------------------------


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (``realm.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def claim_key(claims: Mapping[str, Any], path: str) -> bytes | None:
    """A claim's value as bytes (a release split's key), None when absent."""
    value = _claim(claims, path)
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, sort_keys=True).encode()


def _claim_strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    if isinstance(value, str):
        return [value]
    return [json.dumps(value)]  # numbers and booleans as JSON spells them


def _scopes(claims: Mapping[str, Any]) -> set[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return set(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return {s for s in scp if isinstance(s, str)}
    if isinstance(scp, str):
        return set(scp.split())
    return set()


class _Rule:
    __slots__ = ("allow", "cidrs", "claims", "consumers", "groups", "provider", "scopes")

    def __init__(self, allow: bool, principal: AuthorizationPrincipal) -> None:
        self.allow = allow
        self.consumers = frozenset(principal.consumers)
        self.groups = frozenset(principal.groups)
        self.cidrs = NetworkSet(principal.client_cidrs) if principal.client_cidrs else None
        jwt = principal.jwt
        self.provider = jwt.provider if jwt is not None else None
        self.claims = tuple((c.name, frozenset(c.values)) for c in jwt.claims) if jwt else ()
        self.scopes = frozenset(jwt.scopes) if jwt is not None else frozenset()

    def matches(self, who: Principal | None, ip: IPAddress | None) -> bool:
        if self.cidrs is not None and not self.cidrs.contains(ip):
            return False
        if self.consumers and (who is None or who.consumer not in self.consumers):
            return False
        if self.groups and (who is None or not self.groups & who.groups):
            return False
        if self.provider is not None and (who is None or who.provider != self.provider):
            return False
        if self.claims or self.scopes:
            claims = who.claims if who is not None else None
            if claims is None:
                return False
            for name, values in self.claims:
                if not any(v in values for v in _claim_strings(_claim(claims, name))):
                    return False
            if self.scopes and not self.scopes <= _scopes(claims):
                return False
        return True


class Authorization:
    __slots__ = ("default_allow", "rules")

    def __init__(self, spec: AuthorizationSpec) -> None:
        self.default_allow = spec.default_action == "Allow"
        self.rules = tuple(_Rule(r.action == "Allow", r.principal) for r in spec.rules)

    def allows(self, who: Principal | None, ip: IPAddress | None) -> bool:
        for rule in self.rules:
            if rule.matches(who, ip):
                return rule.allow
        return self.default_allow


# -- the filter --------------------------------------------------------------------------


def _header_value(value: Any) -> bytes | None:
    """A claim as a header value; None when it cannot be one safely."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    data = text.encode()
    if len(data) > 8192 or any((b < 0x20 and b != 0x09) or b == 0x7F for b in data):
        return None
    return data


_CN: Final = re.compile(rb'Subject="(?:[^"]*,)?CN=([^,"]+)')


def certificate_name(xfcc: bytes) -> str | None:
    """The common name in an ``x-forwarded-client-cert`` value made by the transport."""
    m = _CN.search(xfcc)
    return m.group(1).decode("utf-8", "replace") if m else None


class AuthFilter:
    __slots__ = (
        "address",
        "api_keys",
        "authz",
        "basic",
        "challenges",
        "client_certs",
        "consumer_header",
        "cors",
        "groups",
        "ip_rules",
        "jwt",
        "name",
        "needs_ip",
        "static",
        "static_headers",
        "strip",
    )

    def __init__(self, policy: SecurityPolicyObject, consumers: list[ConsumerObject]) -> None:
        spec = policy.spec
        self.name = f"{policy.metadata.namespace}/{policy.metadata.name}"
        self.groups = {c.metadata.name: frozenset(c.spec.groups) for c in consumers}
        self.jwt = JWTAuth(spec.jwt) if spec.jwt is not None else None
        self.client_certs = spec.client_certificate is not None
        key_auth = spec.api_key_auth
        self.api_keys = APIKeyTable(key_auth, consumers) if key_auth is not None else None
        self.basic = BasicAuth(spec.basic_auth) if spec.basic_auth is not None else None
        self.authz = Authorization(spec.authorization) if spec.authorization else None
        rules = spec.ip_rules
        self.ip_rules = IPRules(rules.allow, rules.deny) if rules is not None else None
        detect = spec.client_ip_detection
        xff = detect.x_forwarded_for if detect is not None else None
        self.address = ClientAddress(xff.num_trusted_hops if xff is not None else 0)
        self.needs_ip = self.ip_rules is not None or (
            self.authz is not None and any(r.cidrs is not None for r in self.authz.rules)
        )
        self.cors = CORSPolicy(spec.cors) if spec.cors is not None else None
        self.static_headers = security_headers(spec.response_headers)
        static = list(self.static_headers)
        if self.cors is not None and self.cors.vary:
            static.append((b"vary", b"Origin"))
        self.static = ResponseHeaders(static) if static else None
        self.consumer_header = (
            key_auth.forward_consumer_header.lower().encode()
            if key_auth is not None and key_auth.forward_consumer_header
            else None
        )
        strip: set[bytes] = set()
        if self.consumer_header is not None:
            strip.add(self.consumer_header)
        if self.jwt is not None:
            for provider in self.jwt.providers:
                strip.update(h for h, _ in provider.claim_headers)
        self.strip = frozenset(strip)
        challenges: Headers = []
        if self.jwt is not None:
            challenges.append((WWW_AUTHENTICATE, BEARER))
        if self.api_keys is not None:
            challenges.append((WWW_AUTHENTICATE, APIKEY))
        if self.basic is not None:
            challenges.append((WWW_AUTHENTICATE, BASIC))
        self.challenges = challenges

    # -- per request ------------------------------------------------------------------------

    def check(
        self,
        head: RequestHead,
        peer: bytes,
        loop: asyncio.AbstractEventLoop,
        client_cert: bytes | None = None,
    ) -> AuthVerdict | Coroutine[Any, Any, AuthVerdict]:
        """``client_cert``: the connection's verified certificate, as the
        ``x-forwarded-client-cert`` value the transport made of it."""
        strip = self.strip
        if strip and any(n in strip for n, _ in head.headers):
            head.headers = [h for h in head.headers if h[0] not in strip]
        ip = self.address.resolve(head, peer) if self.needs_ip else None
        cors = self.cors
        origin = head.received.get(b"origin") if cors is not None else None
        response = self._response(origin)
        rules = self.ip_rules
        if rules is not None and not rules.admits(ip):
            return self._refuse(403, FORBIDDEN, b"the client address is not allowed", [], response)
        if (
            cors is not None
            and origin is not None
            and head.method == b"OPTIONS"
            and b"access-control-request-method" in head.received
        ):
            return AuthVerdict(204, headers=cors.preflight(origin, head) + self.static_headers)
        if self.client_certs and client_cert is not None:
            name = certificate_name(client_cert)
            if name is not None:
                who = Principal(name, self.groups.get(name, frozenset()))
                return self._authorize(who, ip, head, response)
        if self.jwt is None and self.api_keys is None and self.basic is None:
            if self.client_certs:
                return self._refuse(401, UNAUTHORIZED, NO_CERTIFICATE, [], response)
            return self._authorize(None, ip, head, response)
        step = self._authenticate(head, loop)
        if isinstance(step, _Pending):
            return self._finish_later(step, ip, head, response)
        return self._conclude(step, ip, head, response)

    def response_headers(self, origin: bytes | None) -> ResponseHeaders | None:
        """The headers to set on an allowed request's response (``origin``: its Origin)."""
        return self._response(origin)

    def _response(self, origin: bytes | None) -> ResponseHeaders | None:
        cors = self.cors
        if cors is None or origin is None:
            return self.static
        return ResponseHeaders(cors.actual(origin) + self.static_headers)

    def _refuse(
        self,
        status: int,
        code: bytes,
        message: bytes,
        headers: Headers,
        response: ResponseHeaders | None,
    ) -> AuthVerdict:
        if response is not None:
            headers = headers + response.headers
        return AuthVerdict(status, code, message, headers)

    def _conclude(
        self,
        step: Step,
        ip: IPAddress | None,
        head: RequestHead,
        response: ResponseHeaders | None,
    ) -> AuthVerdict:
        if isinstance(step, AuthVerdict):
            return self._refuse(step.status, step.code, step.message, step.headers, response)
        return self._authorize(step, ip, head, response)

    def _authorize(
        self,
        who: Principal | None,
        ip: IPAddress | None,
        head: RequestHead,
        response: ResponseHeaders | None,
    ) -> AuthVerdict:
        authz = self.authz
        if authz is not None and not authz.allows(who, ip):
            return self._refuse(
                403, FORBIDDEN, b"access denied by the authorization rules", [], response
            )
        if who is not None:
            self._add_identity(head, who)
        return AuthVerdict(0, principal=who, response=response)

    async def _finish_later(
        self,
        step: _Pending,
        ip: IPAddress | None,
        head: RequestHead,
        response: ResponseHeaders | None,
    ) -> AuthVerdict:
        current: Step | _Pending = step
        try:
            while isinstance(current, _Pending):
                current = current.resume(await current.wait())
        except Exception as exc:  # a bug, not a verdict: say so without details
            log.error(
                "SecurityPolicy %s: authentication failed (%s)", self.name, type(exc).__name__
            )
            return self._refuse(
                500, b"auth_error", b"the request could not be authenticated", [], response
            )
        return self._conclude(current, ip, head, response)

    # -- authentication ---------------------------------------------------------------------

    def _authenticate(self, head: RequestHead, loop: asyncio.AbstractEventLoop) -> Step | _Pending:
        jwt = self.jwt
        if jwt is not None:
            token = jwt.extract(head)
            if token is not None:
                return self._jwt_step(jwt.verify(token, loop), token, loop)
        keys = self.api_keys
        if keys is not None:
            key = keys.extract(head)
            if key is not None:
                consumer = keys.lookup(key, time.time())
                if consumer is None:
                    return self._unauthorized(b"the API key is not valid", APIKEY)
                return Principal(consumer, self.groups.get(consumer, frozenset()))
        basic = self.basic
        if basic is not None:
            creds = basic.extract(head)
            if creds is not None:
                return self._basic_step(basic, creds)
        if jwt is not None and jwt.optional:
            return None
        return AuthVerdict(401, UNAUTHORIZED, NO_CREDENTIALS, list(self.challenges))

    @staticmethod
    def _unauthorized(message: bytes, challenge: bytes) -> AuthVerdict:
        return AuthVerdict(401, UNAUTHORIZED, message, [(WWW_AUTHENTICATE, challenge)])

    def _jwt_step(
        self, outcome: JWTOutcome, token: bytes, loop: asyncio.AbstractEventLoop
    ) -> Step | _Pending:
        if isinstance(outcome, Fetching):
            provider = outcome.provider

            def resume(_: object) -> Step | _Pending:
                return self._jwt_step(provider.verify(token, True, loop), token, loop)

            return _Pending(outcome.keys.wait, resume)
        if isinstance(outcome, Refused):
            if outcome.unavailable:
                return AuthVerdict(
                    503,
                    b"jwks_unavailable",
                    b"the keys to verify the token cannot be fetched; try again later",
                    [(b"retry-after", b"5")],
                )
            return self._unauthorized(outcome.reason.encode(), BEARER_INVALID)
        claims = outcome.claims
        sub = claims.get("sub")
        consumer = sub if isinstance(sub, str) else None
        groups = self.groups.get(consumer, frozenset()) if consumer is not None else frozenset()
        return _JWTPrincipal(consumer, groups, claims, outcome.provider)

    def _basic_step(self, basic: BasicAuth, creds: tuple[bytes, bytes]) -> Step | _Pending:
        if creds is MALFORMED:
            return self._unauthorized(b"the Basic credentials are malformed", BASIC)
        user, password = creds
        if basic.cached(user, password):
            return self._basic_principal(user)
        if basic.busy():
            return AuthVerdict(
                503,
                b"auth_busy",
                b"too many password checks are in progress; try again shortly",
                [(b"retry-after", b"1")],
            )

        def wait() -> Awaitable[bool]:
            return basic.verify(user, password)

        def resume(ok: object) -> Step:
            if ok is True:
                return self._basic_principal(user)
            return self._unauthorized(b"the user name or password is not valid", BASIC)

        return _Pending(wait, resume)

    def _basic_principal(self, user: bytes) -> Principal:
        name = user.decode("utf-8", "replace")
        return Principal(name, self.groups.get(name, frozenset()))

    def _add_identity(self, head: RequestHead, who: Principal) -> None:
        header = self.consumer_header
        if header is not None and who.consumer_key is not None:
            value = _header_value(who.consumer)
            if value is not None:
                head.headers.append((header, value))
        if isinstance(who, _JWTPrincipal):
            claims = who.claims
            assert claims is not None
            for name, path in who.source.claim_headers:
                value = _header_value(_claim(claims, path))
                if value is not None:
                    head.headers.append((name, value))


class _JWTPrincipal(Principal):
    """A principal vouched for by a JWT provider (whose claimToHeaders apply)."""

    __slots__ = ("source",)

    def __init__(
        self,
        consumer: str | None,
        groups: frozenset[str],
        claims: dict[str, Any],
        source: JWTProvider,
    ) -> None:
        super().__init__(consumer, groups, claims, source.name)
        self.source = source
