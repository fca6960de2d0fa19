"""``SecurityPolicy`` on the data plane: authentication (JWT/JWKS, API keys, Basic),
authorization rules, IP rules, CORS and security response headers.

``AuthFilter`` (``chain``) is the one object a ``RouteAction`` holds; the exchange calls
``check`` after routing and before rate limits and keeps the ``Principal`` it returns
for Consumer / JWT-claim rate-limit keys. Each part lives in its own module: ``jwt``,
``apikeys``, ``basic``, ``ipranges``, ``cors``, ``headers``.
"""

from turnout.proxy.filters.auth.chain import AuthFilter, AuthVerdict, Principal
from turnout.proxy.filters.auth.headers import ResponseHeaders

__all__ = ["AuthFilter", "AuthVerdict", "Principal", "ResponseHeaders"]
