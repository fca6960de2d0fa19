"""A request refused before parsing is counted as a refusal and logged with every field."""

from __future__ import annotations

import asyncio
import json

from turnout.observe.accesslog import FIELDS, AccessLog
from turnout.proxy.runtime import ProxySettings, Runtime


class Lines:
    def __init__(self) -> None:
        self.data = b""
        self.dropped = 0

    def write(self, data: bytes, lines: int) -> None:
        self.data += data

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass


def test_refused_requests_log_every_field_and_count_as_refusals() -> None:
    sink = Lines()
    loop = asyncio.new_event_loop()
    try:
        rt = Runtime(loop, ProxySettings(), AccessLog(sink, tuple(FIELDS)))
        rt.refused(400, b'"10.0.0.1"')
        assert rt.access_log is not None
        rt.access_log.flush()
    finally:
        loop.close()
    doc = json.loads(sink.data)
    assert list(doc) == list(FIELDS)
    assert doc["status"] == 400 and doc["routing_key"] is None and doc["consumer"] is None
    assert rt.stats.refusals == {(400, "malformed_request"): 1}
