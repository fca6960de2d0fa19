"""``ReleaseSplit``: which requests a Release sends to its candidate."""

from __future__ import annotations

from turnout.observe.stats import RouteStats
from turnout.proxy.filters.auth.chain import Principal
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.snapshot.tables import (
    SPLIT_BUCKETS,
    SPLIT_CLAIM,
    SPLIT_CLIENT,
    SPLIT_CONSUMER,
    SPLIT_COOKIE,
    SPLIT_HEADER,
    BackendChoice,
    ReleaseSplit,
)

CANDIDATE = BackendChoice(None, "default/orders-v2", RouteStats())


def head(*headers: tuple[bytes, bytes]) -> RequestHead:
    return RequestHead(b"GET", b"/", b"", [(b"host", b"shop"), *headers])


def split(threshold: int, by: int = SPLIT_COOKIE, **kw: object) -> ReleaseSplit:
    name = b"x-user" if by == SPLIT_HEADER else b"turnout-release"
    return ReleaseSplit(CANDIDATE, threshold, by, name, b"default/orders-v2\0", **kw)  # type: ignore[arg-type]


def test_a_new_user_gets_a_cookie_and_keeps_the_version_it_names() -> None:
    s = split(5000)
    _, cookie = s.pick(head(), b"10.0.0.1")
    assert cookie.startswith(b"turnout-release=") and b"HttpOnly" in cookie
    value = cookie.split(b";")[0]
    first = s.pick(head((b"cookie", value)), b"10.0.0.1")
    assert first[1] == b""  # no new cookie once it has one
    assert all(s.pick(head((b"cookie", value)), b"10.0.0.9")[0] == first[0] for _ in range(20))


def test_users_on_the_candidate_stay_there_as_the_weight_grows() -> None:
    users = [b"user-%d" % i for i in range(2000)]
    on: set[bytes] = set()
    for weight in (5, 10, 25, 50, 100):
        s = split(weight * SPLIT_BUCKETS // 100, SPLIT_HEADER)
        now = {u for u in users if s.pick(head((b"x-user", u)), b"")[0]}
        assert on <= now
        assert abs(len(now) - len(users) * weight / 100) < len(users) * 0.05
        on = now
    assert len(on) == len(users)


def test_pinned_sessions_stay_on_stable() -> None:
    s = split(SPLIT_BUCKETS - 1, pin=b"session")
    to_candidate, cookie = s.pick(head((b"cookie", b"session=abc")), b"")
    assert not to_candidate and cookie.startswith(b"turnout-release=stable;")
    assert not s.pick(head((b"cookie", b"turnout-release=stable")), b"")[0]


def test_ab_match_and_client_address() -> None:
    ab = split(0, match=((b"x-beta", b"yes"),))
    assert ab.pick(head((b"x-beta", b"yes")), b"")[0]
    assert not ab.pick(head((b"x-beta", b"no")), b"")[0]
    by_ip = split(5000, SPLIT_CLIENT)
    assert len({by_ip.pick(head(), b"10.0.0.7")[0] for _ in range(10)}) == 1
    assert not split(0).pick(head(), b"")[0] and split(SPLIT_BUCKETS).pick(head(), b"")[0]


def test_consumer_and_jwt_claim_splits_follow_who_was_authenticated() -> None:
    by_consumer = ReleaseSplit(CANDIDATE, 5000, SPLIT_CONSUMER, b"", b"default/orders-v2\0")
    consumers = [Principal(f"app-{i}") for i in range(400)]
    first = [by_consumer.pick(head(), b"10.0.0.1", p)[0] for p in consumers]
    again = [by_consumer.pick(head(), b"10.0.0.2", p)[0] for p in consumers]
    assert first == again  # a Consumer keeps its version, whatever its address
    assert 140 < sum(first) < 260
    assert by_consumer.pick(head(), b"", None)[1] == b""  # anonymous: random, no cookie

    by_claim = ReleaseSplit(CANDIDATE, 5000, SPLIT_CLAIM, b"org.id", b"default/orders-v2\0")
    orgs = [Principal("sub", claims={"org": {"id": f"org-{i}"}}) for i in range(400)]
    picks = [by_claim.pick(head(), b"", p)[0] for p in orgs]
    assert picks == [by_claim.pick(head(), b"", p)[0] for p in orgs]
    assert 140 < sum(picks) < 260
    same_org = [Principal(f"user-{i}", claims={"org": {"id": "org-7"}}) for i in range(50)]
    assert len({by_claim.pick(head(), b"", p)[0] for p in same_org}) == 1  # one org, one version
    everyone = ReleaseSplit(CANDIDATE, SPLIT_BUCKETS, SPLIT_CLAIM, b"org.id", b"x\0")
    assert everyone.pick(head(), b"", None)[0]
