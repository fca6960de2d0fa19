"""Per-test outcomes of the conformance run, for the summary table (and docs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    name: str
    result: str  # pass | fail | skip
    cases: int = 0
    failed: int = 0
    flaky: int = 0  # cases that passed only after failed attempts
    reason: str = ""

    def detail(self) -> str:
        if self.result == "skip":
            return self.reason
        text = f"{self.cases - self.failed}/{self.cases} cases pass"
        if self.flaky:
            text += f"; {self.flaky} needed retries to become consistent"
        if self.reason:
            text += f"; {self.reason}"
        return text


RESULTS: dict[str, Outcome] = {}


def record(name: str, result: str, **details: object) -> None:
    RESULTS[name] = Outcome(name, result, **details)  # type: ignore[arg-type]


def markdown() -> str:
    lines = ["| Test | Result | Detail |", "|---|---|---|"]
    for name in sorted(RESULTS):
        o = RESULTS[name]
        lines.append(f"| {name} | {o.result} | {o.detail().replace('|', '/')} |")
    results = [o.result for o in RESULTS.values()]
    counts = {r: results.count(r) for r in ("pass", "fail", "skip")}
    lines.append("")
    lines.append(f"{counts['pass']} pass, {counts['fail']} fail, {counts['skip']} skip")
    return "\n".join(lines)
