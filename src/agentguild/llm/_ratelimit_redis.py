"""`RedisLimiter`: GCRA rate limits shared by every instance, in one Lua script per check.

If Redis cannot be reached, limits degrade to an in-process limiter (per instance) and
return to Redis by themselves once it answers again: a lost Redis never fails a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._ratelimit_limits import Decision, RateLimit
from ._ratelimit_memory import InMemoryLimiter, emission_interval

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("agentguild.ratelimit")

# Times are integer microseconds (exact in Lua's doubles below 2**53). KEYS[1] is the
# request bucket, KEYS[2] the token bucket; each holds its theoretical arrival time (TAT)
# and expires when the bucket is full again. KEYS[3] and KEYS[4] hold each bucket's floor:
# where the latest reservation scheduled in the future ends; a refund never moves the TAT
# back past it (or that slot could be handed out twice). A bucket with interval 0 or cost
# 0 is not limited.
_PRELUDE = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local function store(key, tat)
  if tat <= now then
    redis.call('DEL', key)
  else
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  end
end
"""

# ARGV: now, then (cost, burst, interval) for requests and for tokens, then max wait.
# Returns {1, wait} if admitted (reserved from now + wait), {0, wait} if not, {0, -1} if
# the cost exceeds the burst and can never be admitted.
ACQUIRE_SCRIPT = (
    _PRELUDE
    + """
local max_wait = tonumber(ARGV[8])
local costs, intervals, tats = {}, {}, {}
local wait = 0
for i = 1, 2 do
  local cost = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  local interval = tonumber(ARGV[3 * i + 1])
  if cost > 0 and interval > 0 then
    if cost > burst then
      return {0, -1}
    end
    local tat = tonumber(redis.call('GET', KEYS[i])) or now
    if tat < now then tat = now end
    costs[i], intervals[i], tats[i] = cost, interval, tat
    local w = tat + (cost - burst) * interval - now
    if w > wait then wait = w end
  end
end
if wait > max_wait then
  return {0, wait}
end
local start = now + wait
for i = 1, 2 do
  if tats[i] then
    local tat = tats[i]
    if tat < start then tat = start end
    store(KEYS[i], tat + costs[i] * intervals[i])
    if wait > 0 then store(KEYS[i + 2], tat + costs[i] * intervals[i]) end
  end
end
return {1, wait}
"""
)

# ARGV: now, then (delta, interval) for requests and for tokens. A charge (delta > 0)
# moves the TAT on unchecked; a refund moves it back, never below now (a full bucket).
ADJUST_SCRIPT = (
    _PRELUDE
    + """
for i = 1, 2 do
  local delta = tonumber(ARGV[2 * i])
  local interval = tonumber(ARGV[2 * i + 1])
  if delta ~= 0 and interval > 0 then
    local tat = tonumber(redis.call('GET', KEYS[i]))
    if delta > 0 then
      if tat == nil or tat < now then tat = now end
      store(KEYS[i], tat + delta * interval)
    elseif tat ~= nil then
      tat = tat + delta * interval
      if tat < now then tat = now end
      local floor = tonumber(redis.call('GET', KEYS[i + 2]))
      if floor ~= nil and tat < floor then tat = floor end
      store(KEYS[i], tat)
    end
  end
end
return 1
"""
)


class _Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_ACQUIRE = _Script(ACQUIRE_SCRIPT)
_ADJUST = _Script(ADJUST_SCRIPT)


class RedisLimiter:
    """A `RateLimiter` in Redis: limits shared by every process, one round trip per check.

    Each check is one `EVALSHA` of a Lua script that checks and reserves both the request
    and the token bucket atomically, so concurrent requests from any number of instances
    cannot overshoot a limit. Keys (see `limit_key`) carry a hash tag, so the script is
    Redis Cluster safe, and expire once their bucket has refilled. Time comes from the
    Redis server (`TIME`), so instances with skewed clocks agree; pass `clock` (seconds)
    to drive it from a test clock instead.

    Degraded mode: when Redis fails or does not answer within `op_timeout_s`, checks go to
    `fallback` (an `InMemoryLimiter`, i.e. per-instance limits), a warning is logged once
    per outage on the `agentguild.ratelimit` logger and `outages`/`degraded_calls` count
    it. Redis is tried again every `retry_interval_s` (one probe call at a time), and used
    again as soon as it answers.

    Build the client with short timeouts and at most one quick client-side retry
    (`from_url` does), so an outage costs a call milliseconds, not seconds; `op_timeout_s`
    bounds every Redis call whatever the client's settings.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        fallback: InMemoryLimiter | None = None,
        retry_interval_s: float = 1.0,
        op_timeout_s: float = 0.5,
        clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.fallback = fallback if fallback is not None else InMemoryLimiter()
        self.retry_interval_s = retry_interval_s
        self.op_timeout_s = op_timeout_s
        self.outages = 0
        """How many times Redis became unavailable."""
        self.degraded_calls = 0
        """How many checks and adjustments went to the fallback limiter."""
        self._clock = clock
        self._monotonic = monotonic
        self._errors = _redis_errors()
        self._down = False
        self._next_probe = 0.0
        self._probing = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisLimiter:
        """A limiter on a new client for `url`: short timeouts, one immediate client retry.

        `options` go to `RedisLimiter` (e.g. `retry_interval_s`, `fallback`).
        """
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = Redis.from_url(
            url,
            socket_timeout=0.25,
            socket_connect_timeout=0.25,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=0,
        )
        return cls(client, **options)

    @property
    def degraded(self) -> bool:
        """Whether checks currently go to the in-process fallback."""
        return self._down

    async def aclose(self) -> None:
        """Close the Redis client."""
        await self.redis.aclose()

    async def acquire(
        self, key: str, limit: RateLimit, *, tokens: int = 0, max_wait_s: float = 0.0
    ) -> Decision:
        """Atomically check and reserve one request and `tokens` tokens (see `RateLimiter`)."""
        requests_args = _bucket_args(1, limit.request_burst, limit.requests_per_minute)
        token_args = _bucket_args(tokens, limit.token_burst, limit.tokens_per_minute)
        args = [self._now(), *requests_args, *token_args, f"{max_wait_s * 1e6:.0f}"]
        result = await self._eval(_ACQUIRE, _keys(key), args)
        if result is None:
            return self.fallback.acquire_now(key, limit, tokens=tokens, max_wait_s=max_wait_s)
        allowed, wait_us = int(result[0]), int(result[1])
        if wait_us < 0:
            return Decision(False, math.inf)
        return Decision(bool(allowed), wait_us / 1e6)

    async def adjust(
        self, key: str, limit: RateLimit, *, requests: int = 0, tokens: int = 0
    ) -> None:
        """Charge or refund after the fact (see `RateLimiter.adjust`)."""
        args = [
            self._now(),
            str(requests),
            _interval_us(limit.requests_per_minute),
            str(tokens),
            _interval_us(limit.tokens_per_minute),
        ]
        if await self._eval(_ADJUST, _keys(key), args) is None:
            self.fallback.adjust_now(key, limit, requests=requests, tokens=tokens)

    def _now(self) -> str:
        return "" if self._clock is None else f"{self._clock() * 1e6:.0f}"

    async def _eval(self, script: _Script, keys: Sequence[str], args: Sequence[str]) -> Any:
        """The script's result, or None if Redis is unavailable (use the fallback)."""
        probing = False
        if self._down:
            if self._probing or self._monotonic() < self._next_probe:
                self.degraded_calls += 1
                return None
            probing = self._probing = True
        try:
            async with asyncio.timeout(self.op_timeout_s):
                result = await self._call(script, keys, args)
        except self._errors as exc:
            if self._mark_down(exc):
                await self._drop_idle_connections()
            return None
        finally:
            if probing:
                self._probing = False
        if self._down:
            self._down = False
            logger.info(
                "ratelimit.redis_recovered: rate limits use Redis again",
                extra={"degraded_calls": self.degraded_calls},
            )
        return result

    async def _call(self, script: _Script, keys: Sequence[str], args: Sequence[str]) -> Any:
        from redis.exceptions import NoScriptError

        try:
            return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # First use, or Redis restarted and lost its script cache; EVAL caches it again.
            return await self.redis.eval(script.source, len(keys), *keys, *args)

    def _mark_down(self, exc: BaseException) -> bool:
        """Note a failed call; True if it starts an outage."""
        self.degraded_calls += 1
        self._next_probe = self._monotonic() + self.retry_interval_s
        if self._down:
            return False
        self._down = True
        self.outages += 1
        logger.warning(
            "ratelimit.redis_unavailable: rate limits fall back to in-process limits "
            "(per instance) until Redis answers again (%s: %s)",
            type(exc).__name__,
            exc,
            extra={"outages": self.outages},
        )
        return True

    async def _drop_idle_connections(self) -> None:
        # Pooled connections idle through the outage point at a dead server; without
        # this, the first calls after Redis returns would fail on them and start a
        # spurious second outage.
        pool = getattr(self.redis, "connection_pool", None)
        if pool is None:
            return
        with contextlib.suppress(*self._errors):
            await pool.disconnect(inuse_connections=False)


def _interval_us(per_minute: int | None) -> str:
    return "0" if per_minute is None else str(emission_interval(per_minute, 1_000_000))


def _bucket_args(cost: int, burst: int | None, per_minute: int | None) -> tuple[str, str, str]:
    if per_minute is None or burst is None:
        return "0", "0", "0"
    return str(cost), str(burst), _interval_us(per_minute)


def _redis_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning 'Redis is unavailable': transport, timeout and server errors."""
    errors: tuple[type[BaseException], ...] = (OSError, TimeoutError)
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - a client was given, so redis is installed
        return errors
    return (*errors, RedisError)


def _keys(key: str) -> tuple[str, str, str, str]:
    """The script's keys: both buckets' TATs, then their floors (one hash tag: one slot)."""
    return (key + ":req", key + ":tok", key + ":req:floor", key + ":tok:floor")
