"""Durations in the Gateway API format (GEP-2257).

A duration is one to four ``<number><unit>`` parts, units ``h``, ``m``, ``s`` and ``ms``,
each number at most five digits: ``10s``, ``1m30s``, ``500ms``, ``1h``. Turnout also
accepts a fractional seconds value written as a plain number in its own CLI flags
(``--header-timeout 2.5``), which ``parse_duration`` handles when ``allow_number`` is set.
"""

from __future__ import annotations

import math
import re
from typing import Final

_PART: Final = re.compile(r"([0-9]{1,5})(ms|h|m|s)")
_WHOLE: Final = re.compile(r"(?:[0-9]{1,5}(?:ms|h|m|s)){1,4}")
_UNIT_SECONDS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class DurationError(ValueError):
    """A string that is not a valid duration."""


def parse_duration(text: str, *, allow_number: bool = False) -> float:
    """Return the duration in seconds, or raise ``DurationError`` saying what is wrong."""
    text = text.strip()
    if allow_number:
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if not math.isfinite(value) or value < 0:
                raise DurationError(f"duration {text!r} must be a finite, non-negative number")
            return value
    if not _WHOLE.fullmatch(text):
        raise DurationError(
            f"invalid duration {text!r}: expected e.g. 10s, 500ms, 1m30s (units h, m, s, ms)"
        )
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Render seconds as the shortest GEP-2257 string (used in docs and status)."""
    ms = round(seconds * 1000)
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts) or "0s"
