"""JSON merge patch (RFC 7386), the body of ``PATCH`` with ``application/merge-patch+json``.

Twelve lines; the PyPI packages for it are unmaintained, so it is written here.
"""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
