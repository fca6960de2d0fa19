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


def flow_doc(record: tuple[Any, ...]) -> dict[str, Any]:
    """A worker's flow record (``proxy/spans.request_flow``) as the API shows it."""
    (
        rid,
        method,
        path,
        host,
        trace_id,
        span_id,
        sampled,
        wall_offset,
        start,
        end,
        status,
        listener,
        route,
        backend,
        endpoint,
        routing_key,
        overridden,
        reply_code,
        attempts,
    ) = record
    return {
        "requestId": rid.decode("latin-1"),
        "traceId": f"{trace_id:032x}",
        "spanId": f"{span_id:016x}",
        "sampled": sampled,
        "time": wall_offset + start,
        "durationMs": _ms(end - start),
        "method": method.decode("latin-1"),
        "path": path.decode("latin-1"),
        "host": host,
        "status": status,
        "listener": listener,
        "route": route,
        "backend": backend,
        "endpoint": endpoint,
        "routingKey": routing_key.decode("ascii", "replace"),
        "sandboxOverride": overridden,
        "answeredBy": reply_code.decode("latin-1"),
        "attempts": [
            {
                "endpoint": ep,
                "startMs": _ms(a_start - start),
                "durationMs": _ms((a_end or end) - a_start),
                "status": a_status,
                "error": error,
                "resendCount": resend,
                "spanId": f"{a_span:016x}",
            }
            for ep, a_start, a_end, a_status, error, resend, a_span in attempts
        ],
    }
