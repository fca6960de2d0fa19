"""The configuration of the built-in ``transform`` filter plugin (``FilterPlugin`` with
``spec.plugin: transform``): request header, query, path and method transforms and
response header transforms. Validated like any plugin's config (located errors).

Header values may be templates: ``{method}``, ``{path}``, ``{host}``, ``{client_ip}``,
``{route}``, ``{consumer}``, ``{header.NAME}``, ``{query.NAME}``, ``{claim.NAME}`` (a
JWT claim) and, in response transforms, ``{status}``; ``{{`` and ``}}`` are literal
braces. An unknown placeholder is a configuration error; a missing value renders empty.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

from turnout.config.model.base import HTTPMethod

PLACEHOLDER: Final = re.compile(r"\{([a-z_]+)(?:\.([A-Za-z0-9_.\-]+))?\}")
SIMPLE: Final = frozenset({"method", "path", "host", "client_ip", "route", "consumer", "status"})
NAMED: Final = frozenset({"header", "query", "claim"})
_TOKEN: Final = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")


def _template(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("values may not contain CR, LF or NUL")
    rest = value.replace("{{", "").replace("}}", "")
    for match in PLACEHOLDER.finditer(rest):
        kind, name = match.group(1), match.group(2)
        if (kind in SIMPLE and name is None) or (kind in NAMED and name is not None):
            continue
        raise ValueError(f"unknown placeholder {match.group(0)!r}")
    leftover = PLACEHOLDER.sub("", rest)
    if "{" in leftover or "}" in leftover:
        raise ValueError("unbalanced '{' or '}' (write '{{' and '}}' for literal braces)")
    return value


def _header_name(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid HTTP header name")
    return value.lower()


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Template = Annotated[StrictStr, AfterValidator(_template)]
HeaderName = Annotated[StrictStr, AfterValidator(_header_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeaderTransform(_Model):
    set: dict[HeaderName, Template] = Field(default_factory=dict)
    add: dict[HeaderName, Template] = Field(default_factory=dict)
    remove: list[HeaderName] = Field(default_factory=list)
    rename: dict[HeaderName, HeaderName] = Field(default_factory=dict)


class QueryTransform(_Model):
    set: dict[StrictStr, Template] = Field(default_factory=dict)
    remove: list[StrictStr] = Field(default_factory=list)
    rename: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class PathRegexRewrite(_Model):
    pattern: Annotated[StrictStr, AfterValidator(_regex)]
    substitution: StrictStr


class RequestTransform(_Model):
    method: HTTPMethod | None = None
    path: PathRegexRewrite | None = None
    query: QueryTransform | None = None
    headers: HeaderTransform | None = None


class ResponseTransform(_Model):
    headers: HeaderTransform | None = None


class TransformConfig(_Model):
    request: RequestTransform | None = None
    response: ResponseTransform | None = None
