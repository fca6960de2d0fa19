"""Header-name sets: which fields belong to one hop, to the gateway, or may not appear where.

Every list of header names that decides what is forwarded, dropped, refused or protected
lives here, so a request-smuggling fix is made once. Names are lower case (HTTP/1.1 codecs
lower-case them on the way in; HTTP/2 requires it, RFC 9113 §8.2). The data plane
uses the ``bytes`` sets; the ``*_STR`` variants are for configuration checks. Each set is
a ``frozenset`` built once at import; hot modules bind it to a ``Final`` name of their own
so compiled code reads it as a static, as before. Sets that differ on purpose are named
for what they mean; a test fails if a literal list of hop-by-hop names appears elsewhere.
"""

from __future__ import annotations

from typing import Final


def _str(names: frozenset[bytes]) -> frozenset[str]:
    return frozenset(n.decode("ascii") for n in names)


# RFC 9110 §7.6.1: Connection, and the fields it lists as connection-specific
# (Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade), describe one hop and are
# removed or replaced by every intermediary. RFC 9113 §8.2.2 forbids exactly these in
# HTTP/2 (TE only as "trailers", in a request).
HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade"}
)

# RFC 9113 §8.2.2: never generated in an HTTP/2 response (there is no TE exception there).
H2_CONNECTION_SPECIFIC: Final = HOP_BY_HOP

# Received in an HTTP/2 field block, these make the message malformed (RFC 9113 §8.2.2);
# TE is checked apart (allowed as "trailers").
H2_FORBIDDEN_RECEIVED: Final = HOP_BY_HOP - {b"te"}

# Request fields not copied into an HTTP/2 upstream request: the connection-specific ones
# (RFC 9113 §8.2.2; TE is kept as "trailers" by the caller) and Host, which becomes
# :authority (RFC 9113 §8.3.1).
H2_REQUEST_DROPPED: Final = (HOP_BY_HOP - {b"te"}) | {b"host"}

# Request fields the HTTP/1.1 and HTTP/2 codecs consume: besides the hop-by-hop ones,
# Trailer (RFC 9110 §6.6.2; trailers are re-framed per hop), Content-Length (framing,
# RFC 9112 §6.3), Host (re-made from the target, RFC 9110 §7.2), Expect (the gateway answers
# 100-continue itself, RFC 9110 §10.1.1), Proxy-Authorization (for the proxy, not the
# origin, RFC 9110 §11.7.2) and HTTP2-Settings (the h2c upgrade's, RFC 7540 §3.2.1).
REQUEST_CONSUMED: Final = HOP_BY_HOP | {
    b"trailer",
    b"content-length",
    b"host",
    b"expect",
    b"proxy-authorization",
    b"http2-settings",
}

# Response fields that describe one hop's framing or connection and are re-made per hop:
# the hop-by-hop ones, Content-Length and Trailer (RFC 9112 §6.3, RFC 9110 §6.6.2) and
# Proxy-Authenticate (addressed to the client of a proxy, RFC 9110 §11.7.1).
RESPONSE_CONSUMED: Final = HOP_BY_HOP | {b"content-length", b"trailer", b"proxy-authenticate"}

# Fields the gateway sets itself (de facto X-Forwarded-*, and the request id): the client's
# values are read (X-Forwarded-For is extended, a sane X-Request-Id kept) or replaced,
# never forwarded as sent.
GATEWAY_SET: Final = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"}
)

# Everything a request codec takes out of the client's header list.
REQUEST_REPLACED: Final = REQUEST_CONSUMED | GATEWAY_SET

# Names a client's Connection header may not nominate for removal (RFC 9110 §7.6.1 lets a
# sender nominate any field; removing these would change framing, routing, identity or
# what the gateway vouches for: the Traefik CVE-2024-45410 class).
PROTECTED_FROM_CONNECTION: Final = GATEWAY_SET | {
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"authorization",
    b"cookie",
    b"forwarded",  # RFC 7239
}

# Connection options that are not field names (RFC 9112 §9.6 close, RFC 9110 §7.8 upgrade,
# RFC 2068 §19.7.1 keep-alive): nominating them removes nothing.
CONNECTION_OPTIONS: Final = frozenset({b"close", b"keep-alive", b"upgrade"})

# Trailer fields dropped rather than forwarded (RFC 9110 §6.5.1: framing, routing,
# authentication, content handling and the Trailer field itself may not come as trailers).
# Beyond the RFC's list: whatever the head is checked or rewritten for may not arrive after
# it, so a trailer cannot smuggle a client address (X-Forwarded-*, Forwarded, RFC 7239),
# a session (Cookie) or an expectation (Expect) past the checks made on the head. The
# ``x-forwarded-`` family is open-ended, hence the prefix as well as the names.
FORBIDDEN_TRAILERS: Final = (
    frozenset(
        {
            b"content-length",
            b"transfer-encoding",
            b"host",
            b"connection",
            b"te",
            b"trailer",
            b"authorization",
            b"content-type",
            b"content-encoding",
            b"upgrade",
            b"keep-alive",
            b"forwarded",
            b"cookie",
            b"expect",
            b"x-forwarded-client-cert",
        }
    )
    | GATEWAY_SET
)

# Any trailer name starting with this is dropped too (X-Forwarded-Port, -Prefix, ...).
FORBIDDEN_TRAILER_PREFIX: Final = b"x-forwarded-"


# -- configuration checks (str) ---------------------------------------------------------

# Framing and hop-by-hop fields belong to the gateway: a header filter may not set, add or
# remove them (RFC 9110 §7.6.1, Proxy-Connection included; Content-Length, RFC 9112 §6.3;
# Trailer announces framing, RFC 9110 §6.6.2; Expect makes the upstream answer an interim
# 100 the gateway did not ask for, RFC 9110 §10.1.1).
FILTER_FORBIDDEN_STR: Final = _str(HOP_BY_HOP | {b"content-length", b"trailer", b"expect"})

# Names an identity header (a SecurityPolicy's claim/consumer headers) may not take: the
# gateway-owned ones above, Host, credentials, the fields the gateway sets itself and the
# ones that vouch for the client (Forwarded, RFC 7239; the mutual-TLS client certificate).
IDENTITY_RESERVED_STR: Final = FILTER_FORBIDDEN_STR | _str(
    GATEWAY_SET | {b"host", b"authorization", b"cookie", b"forwarded", b"x-forwarded-client-cert"}
)
