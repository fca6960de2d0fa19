"""Ranking Runbooks for an incident: past effectiveness and similarity, deterministically.

Effectiveness is counted per (alert signature, runbook, first action) from finished runs:
a run that ``succeeded`` (every step, including any verification) counts as effective, a
``failed`` one (an action error, "not effective", a deadline) as not; skipped, denied,
cancelled and dry runs do not count. The signature is the alert's ``alertname``.
Similarity is the share of a Runbook's ``match`` conditions the alert satisfies (1.0 when
it matches). The score is ``0.6 × (effective + 1) / (runs + 2) + 0.4 × similarity`` (the
Laplace estimate gives an untried Runbook 0.5); ties go by namespace and name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from turnout.config.model.remediation import AlertMatch, RunbookSpec
from turnout.control.remediation.matching import differences
from turnout.control.store.remediation_records import AlertRecord

EFFECT_WEIGHT = 0.6


@dataclass(frozen=True, slots=True)
class Outcome:
    alertname: str
    runbook: str  # namespace/name
    action: str
    effective: bool


@dataclass(frozen=True, slots=True)
class Ranked:
    runbook: str
    action: str
    score: float
    effective: int
    runs: int
    similarity: float
    matches: bool


def similarity(match: AlertMatch, alert: AlertRecord) -> float:
    conditions = (
        len(match.labels)
        + len(match.labels_regex)
        + len(match.annotations)
        + len(match.annotations_regex)
        + 1  # firing/resolved
    )
    return round(1.0 - len(differences(match, alert)) / conditions, 4)


def rank(
    books: Mapping[str, RunbookSpec], alert: AlertRecord, history: Iterable[Outcome]
) -> list[Ranked]:
    counts: dict[tuple[str, str], list[int]] = {}
    for o in history:
        if o.alertname == alert.alertname:
            c = counts.setdefault((o.runbook, o.action), [0, 0])
            c[0] += o.effective
            c[1] += 1
    out = []
    for ref, spec in books.items():
        action = spec.steps[0].action
        effective, runs = counts.get((ref, action), [0, 0])
        sim = similarity(spec.match, alert)
        score = EFFECT_WEIGHT * (effective + 1) / (runs + 2) + (1 - EFFECT_WEIGHT) * sim
        out.append(Ranked(ref, action, round(score, 4), effective, runs, sim, sim == 1.0))
    return sorted(out, key=lambda r: (-r.score, r.runbook))
