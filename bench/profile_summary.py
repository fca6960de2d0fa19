"""Summarise a ``py-spy record --format raw`` file (collapsed stacks): top functions.

    python bench/profile_summary.py bench/results/profile.txt [--top 25]

Own time of a function = samples where it is the innermost Python frame. py-spy without
``--native`` does not see C frames, so time in C code a function called (uvloop's
``transport.write`` and its ``send`` syscall, httptools' parser, ...) is charged to it,
and time in uvloop's own loop with no Python frame above it (polling, reading sockets,
dispatching callbacks) is charged to ``Runner.run``, the frame that called
``run_until_complete``. Total time = samples where the function is anywhere on the
stack. Line numbers are folded so each function appears once.

Stacks recorded with ``--threads`` start with ``thread (TID): NAME``; the tables are
per thread, as percentages of that thread's samples, event-loop thread first. A thread
blocked in ``queue.SimpleQueue.get`` is *not* recognised as idle by py-spy, so samples
of the access-log writer thread on that line are waiting, not working.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _fold(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    return f"{m['func']} ({m['file']})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def summarize_collapsed(path: Path, top: int = 25, other_top: int = 5) -> dict[str, Any]:
    own: dict[str, Counter[str]] = defaultdict(Counter)
    total: dict[str, Counter[str]] = defaultdict(Counter)
    own_line: dict[str, Counter[str]] = defaultdict(Counter)
    threads: Counter[str] = Counter()
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count_s = raw.strip().rpartition(" ")
        try:
            count = int(count_s)
        except ValueError:
            continue
        frames = stack.split(";")
        thread = "all threads"
        if frames and frames[0].startswith("thread ("):
            thread = re.sub(r"^thread \(\d+\): ?", "", frames.pop(0)) or "thread"
        if frames and frames[0].startswith("process "):
            frames.pop(0)
        if not frames:
            continue
        threads[thread] += count
        own[thread][_fold(frames[-1])] += count
        own_line[thread][frames[-1]] += count
        for f in {_fold(f) for f in frames}:
            total[thread][f] += count
    samples = sum(threads.values())
    order = sorted(threads, key=lambda t: (t != "MainThread", -threads[t]))
    md = [
        f"Samples (non-idle, all threads): {samples}; per thread: "
        + ", ".join(f"{t} {threads[t]}" for t in order)
        + ".",
        "",
    ]
    result: dict[str, Any] = {"samples": samples, "threads": dict(threads), "top": {}}
    for thread in order:
        n_thread = threads[thread]
        limit = top if thread == order[0] else other_top
        rows = [
            {
                "function": func,
                "own_samples": n,
                "own_pct": n / n_thread * 100,
                "total_pct": total[thread][func] / n_thread * 100,
            }
            for func, n in own[thread].most_common(limit)
        ]
        result["top"][thread] = rows
        md += [
            f"**{thread}** ({n_thread} samples; % of this thread's samples)",
            "",
            "| # | function (file) | own % | total % |",
            "|---:|---|---:|---:|",
        ]
        md += [
            f"| {i} | `{_cell(r['function'])}` | {r['own_pct']:.1f} | {r['total_pct']:.1f} |"
            for i, r in enumerate(rows, 1)
        ]
        md.append("")
    main = order[0] if order else None
    if main is not None:
        md += [f"Hottest lines of {main} (own):", "", "| line | own % |", "|---|---:|"]
        md += [
            f"| `{_cell(frame)}` | {n / threads[main] * 100:.1f} |"
            for frame, n in own_line[main].most_common(15)
        ]
    result["markdown"] = "\n".join(md) + "\n"
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    print(summarize_collapsed(a.path, a.top)["markdown"])
