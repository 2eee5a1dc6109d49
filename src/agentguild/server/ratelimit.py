"""Per-caller request limits of the API gateway, in process and O(1) per request.

Each caller (an API key, else a user, within its tenant) has two budgets:

- a token bucket holding `burst` requests, refilled at `per_minute` a minute: short bursts
  pass, a sustained rate above `per_minute` does not;
- a sliding-window counter of `per_hour` requests an hour (the previous hour's count,
  weighted by how much of it still overlaps the last 3600 s, plus this hour's).

A refused request costs nothing and gets 429 with `Retry-After`. Limits are per instance:
with N instances behind a load balancer a caller gets up to N times the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._platform_settings import ServerSettings
from ..security import Principal
from .errors import ApiError

__all__ = ["RateLimiter"]

_HOUR = 3600.0


@dataclass(slots=True)
class _State:
    tokens: float
    refilled_at: float
    window: int
    """Index of the current hour window (`now // 3600`)."""
    count: int
    previous: int
    """Requests in the window before `window`."""


class RateLimiter:
    """Token bucket per minute plus sliding window per hour, keyed by tenant and caller."""

    def __init__(
        self,
        per_minute: int = 100,
        burst: int = 20,
        per_hour: int = 5000,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if per_minute < 1 or per_hour < 1 or burst < 0:
            raise ValueError("per_minute and per_hour must be >= 1 and burst >= 0")
        self.per_minute = per_minute
        self.capacity = float(max(burst, 1))
        self.per_hour = per_hour
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._states: dict[str, _State] = {}

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> RateLimiter:
        """The limiter `settings` configure (`rate_limit_per_minute`, `_burst`, `_per_hour`)."""
        return cls(
            settings.rate_limit_per_minute,
            settings.rate_limit_burst,
            settings.rate_limit_per_hour,
        )

    @staticmethod
    def key_of(principal: Principal) -> str:
        """The budget a principal draws on: its API key if it used one, else its user."""
        return f"{principal.tenant_id}:{principal.caller_id}"

    def check(self, principal: Principal) -> None:
        """Count one request of `principal`; raise `ApiError` 429 when over a limit."""
        self.check_key(self.key_of(principal))

    def check_key(self, key: str) -> None:
        """Count one request against `key`; raise `ApiError` 429 when over a limit."""
        retry_after = self.hit(key)
        if retry_after is not None:
            seconds = max(1, math.ceil(retry_after))
            raise ApiError(
                429,
                "rate_limited",
                f"rate limit exceeded ({self.per_minute}/min, burst {int(self.capacity)}, "
                f"{self.per_hour}/hour); retry in {seconds} s",
                details={"retry_after_s": seconds},
                headers={"Retry-After": str(seconds)},
            )

    def hit(self, key: str) -> float | None:
        """Admit one request for `key` (None), or refuse it: seconds until one would pass."""
        now = self._clock()
        window = int(now // _HOUR)
        state = self._states.get(key)
        if state is None:
            if len(self._states) >= self._max_keys:
                self._evict(now)
            state = _State(self.capacity, now, window, 0, 0)
            self._states[key] = state
        state.tokens = min(self.capacity, state.tokens + (now - state.refilled_at) * self._rate)
        state.refilled_at = now
        if window != state.window:
            state.previous = state.count if window == state.window + 1 else 0
            state.count = 0
            state.window = window
        if state.tokens < 1.0:
            return (1.0 - state.tokens) / self._rate
        hourly_wait = self._hourly_wait(state, now)
        if hourly_wait is not None:
            return hourly_wait
        state.tokens -= 1.0
        state.count += 1
        return None

    def _hourly_wait(self, state: _State, now: float) -> float | None:
        elapsed = now - state.window * _HOUR
        weight = 1.0 - elapsed / _HOUR
        if state.previous * weight + state.count + 1 <= self.per_hour:
            return None
        if state.count + 1 > self.per_hour or state.previous == 0:
            return _HOUR - elapsed  # not before the next window
        # previous * (1 - (elapsed + d) / H) + count + 1 <= per_hour, solved for d.
        needed = _HOUR * (1.0 - (self.per_hour - state.count - 1) / state.previous) - elapsed
        return max(needed, 0.001)

    def _evict(self, now: float) -> None:
        """Forget idle callers (their buckets are full again) to bound memory."""
        idle = [k for k, s in self._states.items() if now - s.refilled_at > 2 * _HOUR]
        for key in idle:
            del self._states[key]
        if len(self._states) >= self._max_keys:
            for key in list(self._states)[: max(1, self._max_keys // 10)]:
                del self._states[key]

    def reset(self) -> None:
        """Forget every caller's usage (tests, administrative reset)."""
        self._states.clear()
