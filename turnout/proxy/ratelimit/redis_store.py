"""The global rate-limit store: one counter per key in Redis, exact across replicas.

Each decision is one ``EVALSHA`` of a Lua script that does the whole read-modify-write on
the Redis server: read the key's state (a small hash), run the algorithm (the scripts
below transcribe ``algorithms.TokenBucket.step`` and ``SlidingWindow.step``, in
microseconds), write the new state with a ``PEXPIRE`` and return ``{allowed, remaining,
reset_us, retry_us}``. Redis runs a script atomically, so any number of workers on any
number of replicas see one counter; and the time is the server's ``TIME``, so replicas
with skewed clocks agree on buckets and windows (a script that reads ``TIME`` and then
writes needs effects replication: Redis server 5 or later). Idle keys expire (a token bucket when it
would be full again, plus a second; a sliding window after two windows, plus a second).
Keys are ``turnout:rl:<rule name>:<key>``; a key longer than 64 bytes is replaced by its
BLAKE2b-128 digest to bound Redis memory.

Scripts are addressed by their SHA1, computed here; ``load()`` (``SCRIPT LOAD``) may be
called once at worker start to warm the cache; a ``NOSCRIPT`` reply (a restarted or
failed-over Redis, ``SCRIPT FLUSH``) falls back to ``EVAL``, which also caches the script
again.

**Latency bound.** Every call (taking a pooled connection, connecting, the command and
its reply) runs under ``asyncio.timeout`` with the rule's ``timeout`` (default: the
store's, 50 ms); the sockets' own ``socket_timeout``/``socket_connect_timeout`` are only a
backstop (at least 1 s). redis-py retries are disabled (redis-py 6+ retries three times by
default), so a Redis that stops answering (``kill -STOP``, a partition) costs a call at
most its timeout. redis-py drops a connection whose command was cancelled (it would
otherwise hand the late reply to the next command; the stop/resume test checks that
every reply reaches its own call). The ``Breaker`` opens after 5 consecutive failures for
1 s and then lets a single probe through, so while Redis is gone requests stop waiting
altogether. A timeout that fires more than ``LATE`` past its deadline shows this worker's
own loop was held up; it is passed to the breaker with its start time, so one such stall
counts once however many calls were in flight (see ``breaker.py``).

**While Redis fails** (timeout, connection refused, an error reply, breaker open) the rule's
``failure_mode`` decides: ``open`` allows with ``degraded=True`` and
``remaining=None`` (no ``RateLimit-Remaining`` header is sent: the gateway does not know
it); ``closed`` denies with ``degraded=True``, which the facade answers with 503 and a
JSON error, with ``Retry-After`` set to the time until the breaker's next probe (at
least 1 s). A call that timed out may still have been executed by Redis when it resumes,
so a request that was failed open can still be counted afterwards: counting stays
conservative, never generous.

One ``RedisStore`` (one connection pool) per worker process, created on its event loop;
``aclose()`` it on shutdown. The ``redis`` library is imported when the first store is
made, not with this module: a worker without ``--redis`` never loads it (~6 MiB of RSS).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from turnout.proxy.ratelimit.algorithms import Decision, SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.breaker import HALF_OPEN, Breaker
from turnout.proxy.ratelimit.rules import RateLimitRule

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

DEFAULT_TIMEOUT: Final = 0.05
# A timeout that fires this much past its deadline was delayed by this worker's own event
# loop (or process) being held up, not only by the store (measured: on time within ~1 ms
# for a black-holed Redis; 15-17 ms late for a stall of the client's process).
LATE: Final = 0.005
DEFAULT_PREFIX: Final = b"turnout:rl:"
MAX_KEY_BYTES: Final = 64

# Shared prologue: the time in microseconds (ARGV[4] overrides it for tests; empty = TIME).
_NOW: Final = """
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local eps = 1e-9
"""

# KEYS[1]; ARGV: tokens per microsecond, burst, cost, now override.
# State: d = debt (tokens missing from a full bucket), t = its time (µs).
TOKEN_BUCKET_LUA: Final = (
    _NOW
    + """
local per = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'd', 't')
local debt = tonumber(s[1]) or 0
local stamp = tonumber(s[2]) or 0
local level = debt
if now > stamp then
  level = debt - (now - stamp) * per
  if level < 0 then level = 0 end
  stamp = now
end
local after = level + cost
if after <= burst + eps then
  redis.call('HSET', KEYS[1], 'd', string.format('%.17g', after),
             't', string.format('%.17g', stamp))
  redis.call('PEXPIRE', KEYS[1], math.ceil(after / per / 1000) + 1000)
  return {1, math.floor(burst - after + eps), math.ceil(after / per), 0}
end
local reset = level / per
local retry = burst / per
if cost <= burst then retry = (after - burst) / per end
return {0, math.floor(burst - level + eps), math.ceil(reset), math.ceil(retry)}
"""
)

# KEYS[1]; ARGV: window (µs), limit, cost, now override.
# State: w = window index, c = count in window w, p = count in window w - 1.
SLIDING_WINDOW_LUA: Final = (
    _NOW
    + """
local win = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local index = tonumber(s[1]) or 0
local cur = tonumber(s[2]) or 0
local prev = tonumber(s[3]) or 0
local idx = math.floor(now / win)
if idx ~= index then
  if idx == index + 1 then prev = cur else prev = 0 end
  cur = 0
end
local elapsed = now - idx * win
local used = prev * (1 - elapsed / win) + cur
local allowed = 0
local retry = 0
if used + cost <= limit + eps then
  cur = cur + cost
  used = used + cost
  allowed = 1
  redis.call('HSET', KEYS[1], 'w', string.format('%.17g', idx),
             'c', string.format('%.17g', cur), 'p', string.format('%.17g', prev))
  redis.call('PEXPIRE', KEYS[1], math.ceil(2 * win / 1000) + 1000)
elseif cur + cost <= limit and prev > 0 then
  retry = win * (1 - (limit - cur - cost) / prev) - elapsed
  if retry < 0 then retry = 0 end
elseif cur > 0 and cost <= limit then
  local fraction = 1 - (limit - cost) / cur
  if fraction < 0 then fraction = 0 end
  retry = (win - elapsed) + fraction * win
end
local remaining = math.floor(limit - used + eps)
if remaining < 0 then remaining = 0 end
local reset = 0
if cur > 0 then reset = 2 * win - elapsed elseif prev > 0 then reset = win - elapsed end
if allowed == 0 and cost > limit then retry = win end
return {allowed, remaining, math.ceil(reset), math.ceil(retry)}
"""
)


class Script:
    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


TOKEN_BUCKET: Final = Script(TOKEN_BUCKET_LUA)
SLIDING_WINDOW: Final = Script(SLIDING_WINDOW_LUA)


class RedisRule:
    """One global rule bound to a store: its script, key prefix and fixed arguments."""

    __slots__ = ("closed", "limit", "param", "prefix", "rule", "script", "timeout")

    def __init__(self, rule: RateLimitRule, prefix: bytes, timeout: float) -> None:
        algorithm = rule.algorithm
        self.rule = rule
        self.timeout = rule.timeout if rule.timeout is not None else timeout
        self.limit = algorithm.limit
        self.closed = rule.failure_mode == "closed"
        self.prefix = prefix + rule.name.encode() + b":"
        if isinstance(algorithm, TokenBucket):
            self.script = TOKEN_BUCKET
            self.param = repr(algorithm.per_second / 1e6).encode()
        else:
            assert isinstance(algorithm, SlidingWindow)
            self.script = SLIDING_WINDOW
            self.param = str(round(algorithm.window * 1e6)).encode()

    def key(self, key: bytes) -> bytes:
        if len(key) > MAX_KEY_BYTES:
            key = hashlib.blake2b(key, digest_size=16).digest()
        return self.prefix + key

    def failed(self, retry_in: float) -> Decision:
        """The decision when the store could not answer (``failure_mode``)."""
        if self.closed:
            return Decision(False, self.limit, None, 0.0, max(retry_in, 1.0), True)
        return Decision(True, self.limit, None, 0.0, 0.0, True)


class RedisStore:
    """Global counters in Redis: one pool per worker, a bounded timeout and a breaker."""

    __slots__ = (
        "_client",
        "_clock",
        "_errors",
        "_no_script",
        "_pool",
        "_reply_error",
        "_timeout_errors",
        "breaker",
        "calls",
        "failures",
        "late_timeouts",
        "prefix",
        "short_circuits",
        "timeout",
        "timeouts",
    )

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        breaker: Breaker | None = None,
        prefix: bytes = DEFAULT_PREFIX,
        max_connections: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < timeout < float("inf"):
            raise ValueError("the Redis call timeout must be a positive number of seconds")
        self.timeout = timeout
        self.breaker = breaker if breaker is not None else Breaker(5, 1.0)
        self.prefix = prefix
        self._clock = clock
        from redis.asyncio import ConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import NoScriptError, RedisError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self._timeout_errors: tuple[type[BaseException], ...] = (TimeoutError, RedisTimeoutError)
        self._no_script: type[BaseException] = NoScriptError
        self._reply_error: type[Exception] = RedisError
        backstop = max(timeout, 1.0)  # asyncio.timeout bounds calls; this only backs it up
        self._pool: ConnectionPool = ConnectionPool.from_url(
            url,
            socket_timeout=backstop,
            socket_connect_timeout=backstop,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            health_check_interval=0,
        )
        self._client = Redis(connection_pool=self._pool)
        # Plain counters for the worker's stats ticker.
        self.calls = 0  # calls sent to Redis
        self.failures = 0  # of those, failed (errors and timeouts)
        self.timeouts = 0  # of those, timed out
        self.late_timeouts = 0  # of those, fired late: counted once per stall by the breaker
        self.short_circuits = 0  # answered by the open breaker without a call

    def bind(self, rule: RateLimitRule) -> RedisRule:
        return RedisRule(rule, self.prefix, self.timeout)

    async def load(self) -> None:
        """``SCRIPT LOAD`` both scripts (optional warm-up; ``EVAL`` covers a miss)."""
        async with asyncio.timeout(max(self.timeout, 1.0)):
            for script in (TOKEN_BUCKET, SLIDING_WINDOW):
                sha = await self._client.script_load(script.text)
                if sha != script.sha:
                    raise RuntimeError("Redis computed another SHA1 for a rate-limit script")

    async def decide(
        self, bound: RedisRule, key: bytes, cost: int = 1, now_us: int | None = None
    ) -> Decision:
        """One atomic decision in Redis (``now_us`` replaces the server time in tests)."""
        clock = self._clock
        breaker = self.breaker
        if not breaker.allow(clock()):
            self.short_circuits += 1
            return bound.failed(breaker.retry_in(clock()))
        probe = breaker.state == HALF_OPEN
        self.calls += 1
        rkey = bound.key(key)
        when = b"" if now_us is None else str(now_us).encode()
        started = clock()
        try:
            async with asyncio.timeout(bound.timeout):
                reply = await self._run(bound.script, rkey, bound.param, bound.limit, cost, when)
        except asyncio.CancelledError:
            if probe:  # our caller went away: not Redis's fault, but let another probe
                breaker.abandoned(clock())
            raise
        except self._errors as exc:
            self.failures += 1
            now = clock()
            since: float | None = None
            if isinstance(exc, self._timeout_errors):
                self.timeouts += 1
                if now - started > bound.timeout + LATE:
                    # Our loop was held up past the deadline: the calls in flight all
                    # time out together, and that stall must count once (Breaker doc).
                    since = started
                    self.late_timeouts += 1
            breaker.failure(now, since)
            return bound.failed(breaker.retry_in(now))
        breaker.success()
        allowed, remaining, reset_us, retry_us = reply
        return Decision(
            allowed == 1, bound.limit, int(remaining), reset_us / 1e6, retry_us / 1e6, False
        )

    async def _run(
        self, script: Script, key: bytes, param: bytes, limit: int, cost: int, when: bytes
    ) -> list[int]:
        client = self._client
        try:
            reply = await client.evalsha(script.sha, 1, key, param, limit, cost, when)
        except self._no_script:
            reply = await client.eval(script.text, 1, key, param, limit, cost, when)
        if not isinstance(reply, list) or len(reply) != 4:
            raise self._reply_error(f"unexpected rate-limit script reply {reply!r}")
        return reply

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._pool.aclose()
