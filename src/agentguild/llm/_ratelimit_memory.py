"""The in-process `RateLimiter`: GCRA with one arrival time per bucket (see `ratelimit`)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from ._ratelimit_limits import Decision, RateLimit


class InMemoryLimiter:
    """A `RateLimiter` kept in this process (one GCRA arrival time per bucket).

    Each `acquire` runs without awaiting, so concurrent tasks cannot interleave inside a
    check; a lock makes it safe across threads too. Time is kept in integer nanoseconds,
    so a burst is exactly a burst (no float drift). Buckets that have refilled are swept
    away, so memory follows the number of recently active keys.
    """

    _SWEEP_EVERY = 4096

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, int] = {}
        self._floors: dict[str, int] = {}
        """Per bucket: where the latest reservation scheduled in the future ends. A refund
        never moves the TAT back past it, or that slot could be handed out twice."""
        self._lock = threading.Lock()
        self._operations = 0

    def __len__(self) -> int:
        return len(self._tats)

    async def acquire(
        self, key: str, limit: RateLimit, *, tokens: int = 0, max_wait_s: float = 0.0
    ) -> Decision:
        """Atomically check and reserve one request and `tokens` tokens (see `RateLimiter`)."""
        return self.acquire_now(key, limit, tokens=tokens, max_wait_s=max_wait_s)

    async def adjust(
        self, key: str, limit: RateLimit, *, requests: int = 0, tokens: int = 0
    ) -> None:
        """Charge or refund after the fact (see `RateLimiter.adjust`)."""
        self.adjust_now(key, limit, requests=requests, tokens=tokens)

    def acquire_now(
        self, key: str, limit: RateLimit, *, tokens: int = 0, max_wait_s: float = 0.0
    ) -> Decision:
        """`acquire`, synchronously."""
        with self._lock:
            now = round(self._clock() * _NS)
            self._maybe_sweep(now)
            buckets = _buckets(key, limit, requests=1, tokens=tokens)
            wait = 0
            for bucket_key, cost, burst, interval in buckets:
                if cost > burst:
                    return Decision(False, math.inf)
                tat = max(self._tats.get(bucket_key, now), now)
                wait = max(wait, tat + (cost - burst) * interval - now)
            if wait > round(max_wait_s * _NS):
                return Decision(False, wait / _NS)
            start = now + wait
            for bucket_key, cost, _, interval in buckets:
                tat = max(self._tats.get(bucket_key, now), start) + cost * interval
                self._tats[bucket_key] = tat
                if wait > 0:
                    self._floors[bucket_key] = tat
            return Decision(True, wait / _NS)

    def adjust_now(self, key: str, limit: RateLimit, *, requests: int = 0, tokens: int = 0) -> None:
        """`adjust`, synchronously."""
        with self._lock:
            now = round(self._clock() * _NS)
            buckets = _buckets(key, limit, requests=requests, tokens=tokens)
            for bucket_key, delta, _, interval in buckets:
                tat = self._tats.get(bucket_key, now)
                if delta > 0:
                    tat = max(tat, now) + delta * interval
                else:
                    tat = max(tat + delta * interval, now, self._floors.get(bucket_key, now))
                if tat > now:
                    self._tats[bucket_key] = tat
                else:
                    self._tats.pop(bucket_key, None)
                    self._floors.pop(bucket_key, None)

    def _maybe_sweep(self, now: int) -> None:
        self._operations += 1
        if self._operations % self._SWEEP_EVERY:
            return
        for bucket_key in [k for k, tat in self._tats.items() if tat <= now]:
            del self._tats[bucket_key]
            self._floors.pop(bucket_key, None)


_NS = 1_000_000_000


def emission_interval(per_minute: int, units_per_second: int) -> int:
    """Time between two units of a per-minute budget, in `1/units_per_second` seconds.

    Rounded up: exact integers keep bursts exact, and rounding up errs on the strict side
    (the rate is lower by under one part in `60 * units_per_second / per_minute`), so no
    window ever admits more than its limit.
    """
    return -(-60 * units_per_second // per_minute)


def _buckets(
    key: str, limit: RateLimit, *, requests: int, tokens: int
) -> list[tuple[str, int, int, int]]:
    """(bucket key, cost, burst, ns per unit) of each limited budget with a nonzero cost."""
    out = []
    if limit.requests_per_minute is not None and requests:
        interval = emission_interval(limit.requests_per_minute, _NS)
        out.append((key + ":req", requests, limit.request_burst or 0, interval))
    if limit.tokens_per_minute is not None and tokens:
        interval = emission_interval(limit.tokens_per_minute, _NS)
        out.append((key + ":tok", tokens, limit.token_burst or 0, interval))
    return out
