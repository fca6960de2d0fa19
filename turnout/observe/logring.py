"""The recent access log of every worker of a replica, merged, for ``turnout logs``.

Workers keep the lines their access log formatted (``AccessLog.take_recent``, at most
1000 a second each) and hand them over with their once-a-second stats; the supervisor
files them here in time order, with events of its own (tunnels opened and closed,
sandboxes created and deleted) in the same stream. The ring holds the latest
``size`` entries; every entry gets a sequence number, which is how ``--follow`` asks
for "what came after what I have seen". Lines carry the fields the access log was
told to write (``--access-log-fields``): a filter on a field the lines lack matches
nothing. Sampled-out requests are not here either: the ring shows what the log wrote.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class LogFilter:
    route: str = ""  # exact route label, or a prefix ending in "*"
    status: str = ""  # "5xx", "4xx", or an exact code such as "404"
    key: str = ""  # sandbox routing key
    consumer: str = ""
    since: float = 0.0  # Unix time; entries older are left out

    def matches(self, entry: dict[str, Any]) -> bool:
        if entry.get("type") == "event":
            # events pass unless the filter is about requests only
            return (
                not (self.route or self.status or self.consumer)
                and (not self.key or entry.get("routing_key") == self.key)
                and entry.get("unix", 0.0) >= self.since
            )
        if self.since and entry.get("unix", 0.0) < self.since:
            return False
        if self.route:
            route = entry.get("route") or ""
            if self.route.endswith("*"):
                if not route.startswith(self.route[:-1]):
                    return False
            elif route != self.route:
                return False
        if self.status:
            status = str(entry.get("status", ""))
            if self.status.endswith("xx"):
                if status[:1] != self.status[:1]:
                    return False
            elif status != self.status:
                return False
        if self.key and entry.get("routing_key") != self.key:
            return False
        return not self.consumer or entry.get("consumer") == self.consumer


class LogRing:
    def __init__(self, size: int = 10_000) -> None:
        self.seq = 0
        self.dropped = 0  # lines the workers could not keep (summed from their stats)
        self._ring: deque[dict[str, Any]] = deque(maxlen=size)

    def add_lines(self, lines: list[bytes], worker: int) -> None:
        """One worker's formatted access-log lines (JSON objects)."""
        now = time.time()
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            entry["type"] = "request"
            entry["worker"] = worker
            # the receipt time orders and filters lines whose fields lack "time"
            entry["unix"] = now
            self._append(entry)

    def add_event(self, kind: str, message: str, **fields: Any) -> None:
        """A supervisor or control-plane event (tunnel, sandbox) in the same stream."""
        now = time.time()
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        )
        self._append(
            {
                "type": "event",
                "event": kind,
                "message": message,
                "time": stamp,
                "unix": now,
                **fields,
            }
        )

    def _append(self, entry: dict[str, Any]) -> None:
        self.seq += 1
        entry["seq"] = self.seq
        self._ring.append(entry)

    def recent(self, flt: LogFilter, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Matching entries with a sequence number above ``after``, oldest first, at most
        the last ``limit`` of them (``limit`` 0: all)."""
        out = [e for e in self._ring if e["seq"] > after and flt.matches(e)]
        return out[-limit:] if limit > 0 else out
