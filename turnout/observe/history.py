"""Recent requests per sandbox routing key, gathered from every worker of a replica.

Workers keep each request that carried a routing key in force (``WorkerStats.remember``)
and hand the records over with their once-a-second stats. The supervisor files them
here: a ring of the latest ``per_key`` requests for each key, and at most ``max_keys``
keys (the least recently active is forgotten first), so memory stays bounded whatever
clients send. Every record gets a sequence number, which is how ``turnout trace
--follow`` asks for "what came after what I have seen".

Traced requests (tracing on, the request sampled or an error) also arrive as flows:
their hops (listener, route, backend, sandbox override, each upstream attempt with its
timing), filed by request id, the latest ``max_flows`` of them. ``find`` answers
``turnout trace REQUEST_ID`` from those, or else from the keyed rings (without hops).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Final

from turnout.observe import flowrecord as F

FIELDS: Final = (
    "key",
    "time",
    "durationMs",
    "method",
    "target",
    "route",
    "backend",
    "endpoint",
    "status",
    "requestId",
)


class RequestHistory:
    def __init__(self, per_key: int = 200, max_keys: int = 1024, max_flows: int = 10_000) -> None:
        self.per_key = per_key
        self.max_keys = max_keys
        self.max_flows = max_flows
        self._flows: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.seq = 0
        self._keys: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self.dropped = 0  # records the workers could not keep (summed from their stats)

    def add(self, records: list[tuple[Any, ...]] | tuple[Any, ...]) -> None:
        keys = self._keys
        for record in sorted(records, key=lambda r: r[1]):  # by start time across workers
            key = record[0]
            ring = keys.get(key)
            if ring is None:
                ring = keys[key] = deque(maxlen=self.per_key)
                while len(keys) > self.max_keys:
                    keys.popitem(last=False)
            else:
                keys.move_to_end(key)
            self.seq += 1
            entry = dict(zip(FIELDS, record, strict=True))
            entry["seq"] = self.seq
            ring.append(entry)

    def recent(self, key: str, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """The requests of ``key`` with a sequence number above ``after``, oldest first,
        at most the last ``limit`` of them."""
        ring = self._keys.get(key)
        if ring is None:
            return []
        out = [e for e in ring if e["seq"] > after]
        return out[-limit:] if limit > 0 else out

    def add_flows(self, flows: list[tuple[Any, ...]]) -> None:
        store = self._flows
        for record in flows:
            flow = flow_doc(record)
            rid = flow["requestId"]
            if not rid:
                continue
            store[rid] = flow
            store.move_to_end(rid)
            while len(store) > self.max_flows:
                store.popitem(last=False)

    def find(self, request_id: str) -> dict[str, Any] | None:
        """The flow of request ``request_id``; else its keyed record (no hops); else None."""
        flow = self._flows.get(request_id)
        if flow is not None:
            return flow
        for ring in self._keys.values():
            for entry in ring:
                if entry["requestId"] == request_id:
                    return entry
        return None

    def keys(self) -> list[str]:
        return list(self._keys)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _attempt_doc(a: tuple[Any, ...], start: float, end: float) -> dict[str, Any]:
    a_start = a[F.A_START]
    return {
        "endpoint": a[F.A_ENDPOINT],
        "startMs": _ms(a_start - start),
        "durationMs": _ms((a[F.A_END] or end) - a_start),
        "status": a[F.A_STATUS],
        "error": a[F.A_ERROR],
        "resendCount": a[F.A_RESEND],
        "spanId": f"{a[F.A_SPAN_ID]:016x}",
    }


def flow_doc(record: tuple[Any, ...]) -> dict[str, Any]:
    """A worker's flow record (``observe.flowrecord``) as the API shows it.

    ``filters``, ``releaseVersion`` and ``mirrors`` came later than the rest: a record
    without them (an older worker's) gets them empty."""
    start = record[F.START]
    end = record[F.END]
    attempts = record[F.ATTEMPTS]
    extra = len(record) > F.RELEASE
    return {
        "requestId": record[F.REQUEST_ID].decode("latin-1"),
        "traceId": f"{record[F.TRACE_ID]:032x}",
        "spanId": f"{record[F.SPAN_ID]:016x}",
        "sampled": record[F.SAMPLED],
        "time": record[F.WALL_OFFSET] + start,
        "durationMs": _ms(end - start),
        "method": record[F.METHOD].decode("latin-1"),
        "path": record[F.PATH].decode("latin-1"),
        "host": record[F.HOST],
        "status": record[F.STATUS],
        "listener": record[F.LISTENER],
        "route": record[F.ROUTE],
        "backend": record[F.BACKEND],
        "endpoint": record[F.ENDPOINT],
        "routingKey": record[F.ROUTING_KEY].decode("ascii", "replace"),
        "sandboxOverride": record[F.OVERRIDDEN],
        "answeredBy": record[F.REPLY_CODE].decode("latin-1"),
        "attempts": [
            _attempt_doc(a, start, end)
            for a in attempts
            if len(a) <= F.A_MIRROR or not a[F.A_MIRROR]
        ],
        "filters": list(record[F.FILTERS]) if extra else [],
        "releaseVersion": record[F.RELEASE] if extra else "",
        "mirrors": [
            {**_attempt_doc(a, start, end), "backend": a[F.A_MIRROR]}
            for a in attempts
            if len(a) > F.A_MIRROR and a[F.A_MIRROR]
        ],
    }
