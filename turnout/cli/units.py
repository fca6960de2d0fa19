"""Parsing of human sizes (``32k``, ``10MiB``) and durations for CLI flags."""

from __future__ import annotations

import re

import typer

from turnout.core.durations import DurationError, parse_duration

_SIZE = re.compile(r"(?i)\s*([0-9]+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*")
_FACTORS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
}


def size(text: str) -> int:
    m = _SIZE.fullmatch(text)
    if m is None:
        raise typer.BadParameter(f"{text!r} is not a size (e.g. 8192, 32k, 10MiB)")
    return int(m.group(1)) * _FACTORS[(m.group(2) or "").lower()]


def duration(text: str) -> float:
    try:
        return parse_duration(text, allow_number=True)
    except DurationError as exc:
        raise typer.BadParameter(str(exc)) from None
