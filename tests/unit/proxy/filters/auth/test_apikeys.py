"""API keys: looked up by their SHA-256, several active per Consumer, expiring."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from tests.unit.proxy.filters.auth.conftest import request
from turnout.config.model.security import APIKeyAuthSpec, ConsumerObject
from turnout.proxy.filters.auth.apikeys import APIKeyTable

KEY_A1 = "a1-0123456789abcdef"
KEY_A2 = "a2-0123456789abcdef"
KEY_B = "b-0123456789abcdefg"
KEY_OLD = "old-0123456789abcdef"


def consumer(name: str, *keys: dict[str, Any]) -> ConsumerObject:
    return ConsumerObject.model_validate(
        {
            "apiVersion": "turnout.dev/v1alpha1",
            "kind": "Consumer",
            "metadata": {"name": name},
            "spec": {"apiKeys": list(keys)},
        }
    )


def table(**spec: Any) -> APIKeyTable:
    return APIKeyTable(
        APIKeyAuthSpec.model_validate(spec),
        [
            consumer(
                "mobile-app",
                {"key": KEY_A1},
                {"sha256": hashlib.sha256(KEY_A2.encode()).hexdigest().upper()},
                {"key": KEY_OLD, "expiresAt": "2020-01-01T00:00:00Z"},
            ),
            consumer("partner", {"key": KEY_B, "expiresAt": "2999-01-01T00:00:00+00:00"}),
        ],
    )


def test_rotation_two_active_keys_and_an_expired_one() -> None:
    t = table()
    now = time.time()
    assert t.lookup(KEY_A1.encode(), now) == "mobile-app"
    assert t.lookup(KEY_A2.encode(), now) == "mobile-app"  # given as a (upper-case) hash
    assert t.lookup(KEY_B.encode(), now) == "partner"
    assert t.lookup(KEY_OLD.encode(), now) is None  # expired
    assert t.lookup(KEY_OLD.encode(), 1_500_000_000.0) == "mobile-app"  # before its expiry
    assert t.lookup(b"nope", now) is None
    assert t.lookup(KEY_A1.encode()[:-1], now) is None
    assert t.lookup(b"x" * 100_000, now) is None


def test_the_consumer_stores_only_the_hash() -> None:
    c = consumer("x", {"key": KEY_A1})
    dumped = c.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped["spec"]["apiKeys"] == [{"sha256": hashlib.sha256(KEY_A1.encode()).hexdigest()}]
    assert KEY_A1 not in repr(c) and KEY_A1 not in str(dumped)


def test_extraction_from_header_query_and_cookie() -> None:
    t = table(extractFrom=[{"header": "X-Key"}, {"query": "api_key"}, {"cookie": "k"}])
    assert t.extract(request({"X-Key": KEY_A1})) == KEY_A1.encode()
    head = request(query=f"a=1&api_key={KEY_A1}&b=2&api_key=again")
    assert t.extract(head) == KEY_A1.encode()
    assert head.query == b"a=1&b=2"  # every copy removed: never forwarded, never logged
    head = request(query="api%5Fkey=" + KEY_B)
    assert t.extract(head) == KEY_B.encode() and head.query == b""
    assert t.extract(request({"Cookie": f"k={KEY_B}"})) == KEY_B.encode()
    assert t.extract(request()) is None
    # The default place is the x-api-key header.
    assert table().extract(request({"x-api-key": KEY_A1})) == KEY_A1.encode()
