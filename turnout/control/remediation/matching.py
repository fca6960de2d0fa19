"""Which Runbooks an alert starts, and why the closest one did not.

A Runbook matches when every label and annotation it lists equals the alert's, every
``*Regex`` entry fully matches, and the alert is firing (or resolved, when the Runbook
asks for it: acting on a [RESOLVED] message is how healthy pods get killed). ``closest``
explains a miss: the Runbook with the fewest differences, and the first difference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from turnout.config.model.remediation import AlertMatch
from turnout.control.store.remediation_records import AlertRecord


@dataclass(frozen=True, slots=True, eq=False)
class Candidate:
    namespace: str
    name: str
    match: AlertMatch


def differences(match: AlertMatch, alert: AlertRecord) -> list[str]:
    """What keeps ``match`` from matching ``alert``, in words (empty: it matches)."""
    out: list[str] = []
    if alert.status == "resolved" and not match.resolved:
        out.append("the alert is resolved and the runbook acts on firing alerts only")
    for where, want, have in (
        ("label", match.labels, alert.labels),
        ("annotation", match.annotations, alert.annotations),
    ):
        for key, value in want.items():
            if have.get(key) != value:
                out.append(f"{where} {key} differs: want {value!r}, alert has {have.get(key)!r}")
    for where, patterns, have in (
        ("label", match.labels_regex, alert.labels),
        ("annotation", match.annotations_regex, alert.annotations),
    ):
        for key, pattern in patterns.items():
            if re.fullmatch(pattern, have.get(key, "")) is None:
                out.append(f"{where} {key} differs: want /{pattern}/, alert has {have.get(key)!r}")
    return out


def matching(candidates: Iterable[Candidate], alert: AlertRecord) -> list[Candidate]:
    return [c for c in candidates if not differences(c.match, alert)]


def closest(candidates: Iterable[Candidate], alert: AlertRecord) -> str:
    """ "no runbook matches; closest is ns/name, label team differs: ..." or a plain
    "no runbook matches" when there are none."""
    scored = sorted(
        (
            (len(d), c.namespace, c.name, d)
            for c in candidates
            if (d := differences(c.match, alert))
        ),
    )
    if not scored:
        return "no runbook matches (no runbooks are defined)"
    _, namespace, name, diff = scored[0]
    return f"no runbook matches; closest is {namespace}/{name}: {diff[0]}"
