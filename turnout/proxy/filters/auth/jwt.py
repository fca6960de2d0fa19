"""JWT bearer tokens verified with keys from a JWKS (inline or fetched), with PyJWT.

What a token can and cannot choose (reliability.md b3, JWT attack classes):

- The algorithm comes from the provider's allow-list, never from the token: a token
  whose ``alg`` is not listed (``none`` in any casing is never listed) is refused before
  any key is touched. Each key is bound to the algorithms its type can verify
  (``config.security.jwk_algorithms``): an RSA or EC key never verifies ``HS*``, so a
  token "signed" with the public key as an HMAC secret finds no key.
- Keys are picked by ``kid`` (a plain dictionary lookup, so ``../../dev/null`` simply
  does not match) or, without a ``kid``, among the keys for the algorithm. Embedded
  ``jwk``, ``jku``, ``x5u`` and ``x5c`` headers are never read.
- A ``crit`` header is refused: Turnout understands no JWS extension.
- ``exp`` is required; ``nbf``, ``iat``, ``aud`` and ``iss`` are checked with the
  provider's clock skew. Tokens over ``MAX_TOKEN_BYTES`` are refused unparsed.

Remote key sets (``RemoteKeys``) are fetched by each worker on its own event loop with
``httpx.AsyncClient`` (never a blocking client), each fetch bounded by
``FETCH_TIMEOUT`` in total. A set is cached for ``cacheDuration``, refreshed in the
background shortly before it expires while requests use it, and kept (stale) when a
refresh fails, so cached keys go on working while the JWKS endpoint is down. A token
with an unknown ``kid`` triggers a refetch when the last fetch is at least
``UNKNOWN_KID_REFETCH`` seconds old (key rotation works without a restart; random
``kid`` values cannot cause a refetch storm). Requests that need a key the worker
cannot get answer 503 ``jwks_unavailable`` within the fetch timeout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import weakref
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final

import jwt as pyjwt

from turnout.config.model.security import JWTProviderSpec, JWTSpec
from turnout.config.security import jwk_algorithms, load_jwks_document
from turnout.core.durations import parse_duration
from turnout.core.tasks import spawn
from turnout.proxy.filters.auth.extract import (
    cookie_credential,
    header_credential,
    take_query_credential,
)
from turnout.proxy.protocols.heads import RequestHead

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("turnout.auth")

MAX_TOKEN_BYTES: Final = 16 * 1024
MAX_JWKS_BYTES: Final = 1 << 20
FETCH_TIMEOUT: Final = 2.0
UNKNOWN_KID_REFETCH: Final = 10.0
MAX_RETRY_DELAY: Final = 30.0
IDLE_FORGET: Final = 3600.0  # key sets nobody used for this long leave the registry

# lookup outcomes
FOUND: Final = 0
FETCH: Final = 1  # wait for ``RemoteKeys.wait()``, then look again with final=True
MISSING: Final = 2  # no such key (401)
UNAVAILABLE: Final = 3  # the key set cannot be had right now (503)

_REASONS: Final[dict[type, str]] = {
    pyjwt.ExpiredSignatureError: "the token has expired",
    pyjwt.ImmatureSignatureError: "the token is not valid yet",
    pyjwt.InvalidAudienceError: "the token is not meant for this audience",
    pyjwt.InvalidIssuerError: "the token's issuer is not trusted",
    pyjwt.MissingRequiredClaimError: "the token lacks a required claim",
    pyjwt.InvalidSignatureError: "the token's signature is invalid",
    pyjwt.InvalidAlgorithmError: "the token's algorithm is not allowed",
    pyjwt.DecodeError: "the token is malformed",
}


def _reason(exc: Exception) -> str:
    for cls in type(exc).__mro__:
        reason = _REASONS.get(cls)
        if reason is not None:
            return reason
    return "the token is invalid"


class KeySet:
    """Verification keys by ``(kid, alg)`` and, for tokens without a ``kid``, by alg."""

    __slots__ = ("by_alg", "by_kid", "size")

    def __init__(self, jwks: list[dict[str, Any]], algorithms: tuple[str, ...]) -> None:
        self.by_kid: dict[tuple[str, str], list[pyjwt.PyJWK]] = {}
        self.by_alg: dict[str, list[pyjwt.PyJWK]] = {}
        size = 0
        for jwk in jwks:
            kid = jwk.get("kid")
            for alg in jwk_algorithms(jwk, algorithms):
                try:
                    key = pyjwt.PyJWK(jwk, algorithm=alg)
                except (pyjwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
                    log.warning(
                        "JWKS key %r cannot be loaded for %s (%s)",
                        kid if isinstance(kid, str) else None,
                        alg,
                        type(exc).__name__,
                    )
                    break
                size += 1
                self.by_alg.setdefault(alg, []).append(key)
                if isinstance(kid, str):
                    self.by_kid.setdefault((kid, alg), []).append(key)
        self.size = size

    def find(self, kid: str | None, alg: str) -> list[pyjwt.PyJWK]:
        if kid is None:
            return self.by_alg.get(alg, [])
        return self.by_kid.get((kid, alg), [])


class Keys:
    """Where a provider's keys come from: ``lookup`` answers (outcome, keys)."""

    __slots__ = ()

    def lookup(
        self, kid: str | None, alg: str, final: bool, loop: asyncio.AbstractEventLoop
    ) -> tuple[int, list[pyjwt.PyJWK]]:
        raise NotImplementedError

    def wait(self) -> Awaitable[None]:
        raise NotImplementedError


class LocalKeys(Keys):
    __slots__ = ("keys",)

    def __init__(self, text: str, algorithms: tuple[str, ...]) -> None:
        self.keys = KeySet(load_jwks_document(text), algorithms)

    def lookup(
        self, kid: str | None, alg: str, final: bool, loop: asyncio.AbstractEventLoop
    ) -> tuple[int, list[pyjwt.PyJWK]]:
        found = self.keys.find(kid, alg)
        return (FOUND, found) if found else (MISSING, found)

    async def wait(self) -> None:
        return None


class _Client:
    """One ``httpx.AsyncClient`` per worker loop for every JWKS fetch (created on first
    use: workers without remote key sets never import httpx)."""

    loop: asyncio.AbstractEventLoop | None = None
    client: httpx.AsyncClient | None = None

    @classmethod
    def get(cls) -> httpx.AsyncClient:
        import httpx

        loop = asyncio.get_running_loop()
        if cls.client is None or cls.loop is not loop:
            # httpx logs every request at INFO: a refresh is not news (failures are ours)
            logging.getLogger("httpx").setLevel(logging.WARNING)
            cls.loop = loop
            cls.client = httpx.AsyncClient(
                timeout=FETCH_TIMEOUT,
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
                headers={"accept": "application/json, application/jwk-set+json"},
            )
        return cls.client


class JWKSFetchError(Exception):
    pass


async def fetch_jwks(uri: str) -> str:
    """GET ``uri`` (200 only, at most ``MAX_JWKS_BYTES``), bounded by ``FETCH_TIMEOUT``."""
    async with asyncio.timeout(FETCH_TIMEOUT):
        client = _Client.get()
        async with client.stream("GET", uri) as resp:
            if resp.status_code != 200:
                raise JWKSFetchError(f"HTTP status {resp.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_JWKS_BYTES:
                    raise JWKSFetchError("the document is larger than 1 MiB")
                chunks.append(chunk)
    return b"".join(chunks).decode("utf-8")


class RemoteKeys(Keys):
    """A fetched JWKS shared by every provider (of every snapshot) naming the same URI
    with the same cache duration and algorithms; see the module docstring."""

    __slots__ = (
        "__weakref__",
        "algorithms",
        "expires_at",
        "failures",
        "fetching",
        "keys",
        "last_attempt",
        "last_ok",
        "last_used",
        "loop",
        "timer",
        "ttl",
        "uri",
    )

    def __init__(self, uri: str, ttl: float, algorithms: tuple[str, ...]) -> None:
        self.uri = uri
        self.ttl = ttl
        self.algorithms = algorithms
        self.keys = KeySet([], algorithms)
        self.expires_at = 0.0  # monotonic; 0: never fetched
        self.last_ok = True  # the last fetch succeeded (or none was tried)
        self.last_attempt = -1e9  # monotonic start of the last fetch
        self.last_used = time.monotonic()
        self.failures = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fetching: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- per request ----------------------------------------------------------------------

    def lookup(
        self, kid: str | None, alg: str, final: bool, loop: asyncio.AbstractEventLoop
    ) -> tuple[int, list[pyjwt.PyJWK]]:
        now = time.monotonic()
        self.last_used = now
        if self.loop is not loop:
            self._adopt(loop)
        found = self.keys.find(kid, alg)
        expired = now >= self.expires_at
        if found and (not expired or not self.last_ok):
            self._arm()
            return FOUND, found  # fresh, or stale while the endpoint fails
        if not final:
            if self.fetching is not None:
                return FETCH, found
            if expired and self.last_ok:  # never fetched, or aged out while idle
                self._start()
                return FETCH, found
            if now - self.last_attempt >= UNKNOWN_KID_REFETCH:
                self._start()  # an unknown kid: maybe the keys were rotated
                return FETCH, found
        self._arm()
        if found:
            return FOUND, found
        return (MISSING if self.last_ok else UNAVAILABLE), found

    async def wait(self) -> None:
        task = self.fetching
        if task is not None:
            await asyncio.shield(task)

    # -- fetching -------------------------------------------------------------------------

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """First use on this loop (a worker, or a test's new loop): forget the old one's."""
        self.loop = loop
        self.fetching = None
        self.timer = None

    def _start(self) -> None:
        loop = self.loop
        assert loop is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.last_attempt = time.monotonic()
        self.fetching = spawn(self._fetch(), loop=loop, name=f"jwks {self.uri}")

    async def _fetch(self) -> None:
        try:
            text = await fetch_jwks(self.uri)
            keys = KeySet(load_jwks_document(text), self.algorithms)
        except Exception as exc:  # timeouts, HTTP and JSON errors alike
            self.last_ok = False
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning(
                    "fetching the JWKS %s failed (%s: %s); %s",
                    self.uri,
                    type(exc).__name__,
                    str(exc)[:200] or "no detail",
                    "cached keys stay in use" if self.keys.size else "no keys yet",
                )
        else:
            if self.failures:
                log.info("fetching the JWKS %s works again", self.uri)
            self.keys = keys
            self.expires_at = time.monotonic() + self.ttl
            self.last_ok = True
            self.failures = 0
        finally:
            self.fetching = None
            self._arm()

    def _arm(self) -> None:
        """Keep a refresh timer while the keys are in use."""
        if self.timer is not None or self.fetching is not None or self.loop is None:
            return
        if self.loop.is_closed():
            return
        if self.last_ok:
            margin = min(self.ttl * 0.2, 30.0)
            delay = max(self.expires_at - margin - time.monotonic(), 0.05)
        else:
            delay = min(self.ttl, MAX_RETRY_DELAY, float(2 ** min(self.failures, 5)))
        self.timer = self.loop.call_later(delay, self._due)

    def _due(self) -> None:
        self.timer = None
        if self.last_used < self.last_attempt:
            return  # nobody used the keys since the last fetch: the next request re-arms
        self._start()


_registry: weakref.WeakValueDictionary[tuple[str, float, tuple[str, ...]], RemoteKeys] = (
    weakref.WeakValueDictionary()
)
_recent: dict[tuple[str, float, tuple[str, ...]], RemoteKeys] = {}


def remote_keys(uri: str, ttl: float, algorithms: tuple[str, ...]) -> RemoteKeys:
    """The worker's one ``RemoteKeys`` for this URI, kept across snapshot rebuilds."""
    key = (uri, ttl, algorithms)
    keys = _registry.get(key)
    if keys is None:
        keys = _registry[key] = RemoteKeys(uri, ttl, algorithms)
    # Strong references for a while: a reload that drops and re-adds a provider finds
    # its cached keys; sets unused for an hour are let go.
    _recent[key] = keys
    now = time.monotonic()
    for old in [k for k, v in _recent.items() if now - v.last_used > IDLE_FORGET]:
        if _recent[old].fetching is None:
            del _recent[old]
    return keys


# -- providers ---------------------------------------------------------------------------

HEADER: Final = 0
COOKIE: Final = 1
PARAM: Final = 2
_DEFAULT_SOURCES: Final = ((HEADER, b"authorization", b"bearer "),)


class Verified:
    """A verified token's claims and the provider that vouched for them."""

    __slots__ = ("claims", "provider")

    def __init__(self, claims: dict[str, Any], provider: JWTProvider) -> None:
        self.claims = claims
        self.provider = provider


class Refused:
    """Why a token was refused (a short, secret-free reason); ``unavailable``: the keys
    could not be fetched (503, not 401)."""

    __slots__ = ("reason", "unavailable")

    def __init__(self, reason: str, unavailable: bool = False) -> None:
        self.reason = reason
        self.unavailable = unavailable


class Fetching:
    """The provider's keys are being fetched: await ``keys.wait()``, then verify again
    with ``final=True``."""

    __slots__ = ("keys", "provider")

    def __init__(self, provider: JWTProvider, keys: Keys) -> None:
        self.provider = provider
        self.keys = keys


JWTOutcome = Verified | Refused | Fetching


class JWTProvider:
    __slots__ = (
        "algorithms",
        "audiences",
        "claim_headers",
        "issuer",
        "keys",
        "leeway",
        "name",
        "options",
        "sources",
    )

    def __init__(self, spec: JWTProviderSpec) -> None:
        self.name = spec.name
        self.issuer = spec.issuer
        self.audiences = list(spec.audiences) or None
        self.algorithms = frozenset(spec.algorithms)
        self.leeway = parse_duration(spec.clock_skew)
        self.options: dict[str, Any] = {
            "require": ["exp"],
            "verify_aud": bool(spec.audiences),
            "verify_signature": True,
        }
        algorithms = tuple(spec.algorithms)
        if spec.remote_jwks is not None:
            self.keys: Keys = remote_keys(
                spec.remote_jwks.uri, parse_duration(spec.remote_jwks.cache_duration), algorithms
            )
        else:
            assert spec.local_jwks is not None  # validated: exactly one of the two
            self.keys = LocalKeys(spec.local_jwks.inline, algorithms)
        self.claim_headers = tuple(
            (c.header.lower().encode(), c.claim) for c in spec.claim_to_headers
        )
        sources: list[tuple[int, bytes, bytes]] = []
        ext = spec.extract_from
        if ext is not None:
            for h in ext.headers:
                sources.append(
                    (HEADER, h.name.lower().encode(), (h.value_prefix or "").lower().encode())
                )
            sources.extend((COOKIE, c.encode(), b"") for c in ext.cookies)
            sources.extend((PARAM, p.encode(), b"") for p in ext.params)
        self.sources = tuple(sources) or _DEFAULT_SOURCES

    def extract(self, head: RequestHead) -> bytes | None:
        found: bytes | None = None
        for kind, name, prefix in self.sources:
            if kind == HEADER:
                value = header_credential(head, name, prefix)
            elif kind == COOKIE:
                value = cookie_credential(head, name)
            else:
                value = take_query_credential(head, name)  # always removed from the target
            if value is not None and found is None:
                found = value
        return found

    def verify(self, token: bytes, final: bool, loop: asyncio.AbstractEventLoop) -> JWTOutcome:
        if len(token) > MAX_TOKEN_BYTES:
            return Refused("the token is too large")
        try:
            header = pyjwt.get_unverified_header(token)
        except Exception:  # anything an attacker-made header can raise is a bad token
            return Refused("the token is malformed")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return Refused("the token's algorithm is not allowed")
        if "crit" in header:
            return Refused("the token names critical extensions Turnout does not support")
        kid = header.get("kid")
        outcome, keys = self.keys.lookup(kid if isinstance(kid, str) else None, alg, final, loop)
        if outcome == FETCH:
            return Fetching(self, self.keys)
        if outcome == UNAVAILABLE:
            return Refused("the signing keys cannot be fetched", unavailable=True)
        if outcome == MISSING:
            return Refused("the token's signing key is unknown")
        reason = "the token's signature is invalid"
        for key in keys:
            try:
                claims = pyjwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self.audiences,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options=self.options,  # type: ignore[arg-type]
                )
            except pyjwt.InvalidSignatureError:
                continue  # another key with the same kid (or none) may fit
            except Exception as exc:
                return Refused(_reason(exc))
            return Verified(claims, self)  # PyJWT refuses non-object payloads
        return Refused(reason)


def _issuer_of(token: bytes) -> str | None:
    """The unverified ``iss`` claim, only to choose among several providers."""
    try:
        payload = token.split(b".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    except (ValueError, IndexError, RecursionError):
        return None
    iss = claims.get("iss") if isinstance(claims, dict) else None
    return iss if isinstance(iss, str) else None


class JWTAuth:
    """``jwt.providers``: the token is the first one found where any provider looks;
    the provider whose ``issuer`` matches its ``iss`` (or the first without an issuer)
    verifies it."""

    __slots__ = ("optional", "providers")

    def __init__(self, spec: JWTSpec) -> None:
        self.providers = tuple(JWTProvider(p) for p in spec.providers)
        self.optional = spec.optional

    def extract(self, head: RequestHead) -> bytes | None:
        found: bytes | None = None
        for provider in self.providers:
            token = provider.extract(head)
            if token is not None and found is None:
                found = token
        return found

    def provider_for(self, token: bytes) -> JWTProvider | None:
        providers = self.providers
        if len(providers) == 1:
            return providers[0]
        if len(token) > MAX_TOKEN_BYTES:
            return providers[0]  # refused for its size anyway
        iss = _issuer_of(token)
        fallback = None
        for provider in providers:
            if provider.issuer is None:
                fallback = fallback or provider
            elif provider.issuer == iss:
                return provider
        return fallback

    def verify(self, token: bytes, loop: asyncio.AbstractEventLoop) -> JWTOutcome:
        provider = self.provider_for(token)
        if provider is None:
            return Refused("no provider trusts the token's issuer")
        return provider.verify(token, False, loop)
