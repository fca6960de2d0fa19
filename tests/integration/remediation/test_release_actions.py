"""A runbook aborts or pauses a Release: the same state-machine command as
``turnout release abort``, committed as a revision by the run, idempotent on repeat."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.integration.remediation.harness import Bench, alert_payload, runbook_spec
from turnout.control.releases.state import (
    ABORTED,
    PAUSED,
    PROGRESSING,
    STATE_ANNOTATION,
    ReleaseState,
)

RELEASE: dict[str, Any] = {
    "backend": "orders",
    "candidate": {"backend": "orders-v2"},
    "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}},
}
KEY = ("Release", "default", "orders-v2")


def annotation(state: ReleaseState) -> dict[str, str]:
    return {STATE_ANNOTATION: state.to_json()}


def release_state(b: Bench) -> ReleaseState | None:
    return ReleaseState.from_annotations(b.control.stored[KEY].annotations)


def run(tmp_path: Path, action: str, expected: str) -> None:
    async def main() -> None:
        b = await Bench.open(tmp_path)
        try:
            # a canary under way: at its first step, 10 % on the candidate
            progressing = ReleaseState(phase=PROGRESSING, weight=10, generation=1)
            b.control.put("Release", "orders-v2", RELEASE, annotations=annotation(progressing))
            assert release_state(b) == progressing
            step = {
                "name": action.replace("_", "-"),
                "action": action,
                "params": {"release": "orders-v2", "reason": "error budget burning"},
            }
            b.control.put("Runbook", "stop-canary", runbook_spec(steps=[step]))
            await b.deliver(alert_payload(b.ago(10)))
            await b.tick()
            await b.tick()
            (done,) = await b.runs()
            assert done.state == "succeeded", done.reason
            state = release_state(b)
            assert state is not None and state.phase == expected
            (commit,) = [c for c in b.control.commits if c[2][0].kind == "Release"]
            assert commit[:2] == ("system:remediation", "release-" + action.split("_")[0])
            assert "error budget burning" in state.to_json()
            # a repeated step (a restart) changes nothing and commits nothing
            before = len(b.control.commits)
            await b.deliver(alert_payload(b.ago(5), fingerprint="fp2"))
            await b.tick()
            assert release_state(b) == state
            assert len([c for c in b.control.commits[before:] if c[2][0].kind == "Release"]) == 0
        finally:
            await b.store.close()

    asyncio.run(main())


def test_a_runbook_aborts_a_release(tmp_path: Path) -> None:
    run(tmp_path, "abort_release", ABORTED)


def test_a_runbook_pauses_a_release(tmp_path: Path) -> None:
    run(tmp_path, "pause_release", PAUSED)
