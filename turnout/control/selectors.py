"""Kubernetes label selectors: ``a=b,c!=d,e,!f,g in (x,y),h notin (z)``.

Parsed once per request into a tuple of predicates; ``matches`` ANDs them. Hand-written
because the grammar is small and the Kubernetes client libraries that implement it pull
in a whole cluster client.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Predicate = Callable[[Mapping[str, str]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*")
_EQ = re.compile(rf"\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*")
_EXISTS = re.compile(rf"\s*(!?)\s*({_KEY})\s*")


class SelectorError(ValueError):
    pass


def _split(text: str) -> list[str]:
    # Commas inside "in (a,b)" do not separate requirements.
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _in(key: str, values: frozenset[str]) -> Predicate:
    return lambda labels: labels.get(key) in values


def _notin(key: str, values: frozenset[str]) -> Predicate:
    return lambda labels: labels.get(key) not in values


def _eq(key: str, value: str) -> Predicate:
    return lambda labels: labels.get(key) == value


def _ne(key: str, value: str) -> Predicate:
    return lambda labels: labels.get(key) != value


def _exists(key: str) -> Predicate:
    return lambda labels: key in labels


def _absent(key: str) -> Predicate:
    return lambda labels: key not in labels


def parse_selector(text: str) -> tuple[Predicate, ...]:
    if not text.strip():
        return ()
    out: list[Predicate] = []
    for part in _split(text):
        if m := _SET.fullmatch(part):
            key, op, raw = m.group(1), m.group(3), m.group(4)
            values = frozenset(v.strip() for v in raw.split(",") if v.strip())
            if not values:
                raise SelectorError(f"label selector {part.strip()!r}: empty value set")
            out.append(_in(key, values) if op == "in" else _notin(key, values))
        elif m := _EQ.fullmatch(part):
            key, op, value = m.group(1), m.group(3), m.group(4)
            out.append(_ne(key, value) if op == "!=" else _eq(key, value))
        elif m := _EXISTS.fullmatch(part):
            key = m.group(2)
            out.append(_absent(key) if m.group(1) == "!" else _exists(key))
        else:
            raise SelectorError(f"invalid label selector requirement {part.strip()!r}")
    return tuple(out)


def matches(selector: tuple[Predicate, ...], labels: Mapping[str, str]) -> bool:
    return all(p(labels) for p in selector)
