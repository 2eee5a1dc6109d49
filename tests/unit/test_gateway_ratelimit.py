"""The API gateway's per-caller limits: burst, per-minute refill, per-hour window."""

from __future__ import annotations

import pytest

from agentguild.security import Principal, Role
from agentguild.server.errors import ApiError
from agentguild.server.ratelimit import RateLimiter


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_next_request_waits_for_a_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, per_hour=1000, clock=clock)

    admitted = [limiter.hit("k") for _ in range(3)]
    refused = limiter.hit("k")

    assert admitted == [None, None, None]
    assert refused == pytest.approx(1.0)  # one request a second at 60/min
    clock.now += 1.0
    assert limiter.hit("k") is None


def test_sustained_rate_is_capped_at_the_per_minute_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=100, burst=20, per_hour=10**6, clock=clock)

    admitted = 0
    for _ in range(6000):  # ten requests a second for ten minutes
        clock.now += 0.1
        admitted += limiter.hit("k") is None

    assert 1000 <= admitted <= 1000 + 20


def test_the_hourly_limit_holds_over_a_sliding_hour() -> None:
    clock = Clock(now=3600.0 * 500 + 1800)  # half-way through an hour window
    limiter = RateLimiter(per_minute=10**6, burst=10**6, per_hour=50, clock=clock)

    assert all(limiter.hit("k") is None for _ in range(50))
    wait = limiter.hit("k")

    assert wait is not None
    assert 0 < wait <= 3600
    clock.now += 3600  # an hour on: half of the previous window still overlaps the last hour
    assert sum(limiter.hit("k") is None for _ in range(50)) == 25


def test_callers_have_separate_budgets() -> None:
    limiter = RateLimiter(per_minute=1, burst=1, per_hour=10, clock=Clock())

    assert limiter.hit("tenant-a:user-1") is None
    assert limiter.hit("tenant-a:user-2") is None
    assert limiter.hit("tenant-a:user-1") is not None


def test_check_raises_429_with_retry_after_in_whole_seconds() -> None:
    limiter = RateLimiter(per_minute=1, burst=1, per_hour=10, clock=Clock())
    principal = Principal("t1", Role.USER, user_id="u1")
    limiter.check(principal)

    with pytest.raises(ApiError) as raised:
        limiter.check(principal)

    assert raised.value.status == 429
    assert raised.value.headers == {"Retry-After": "60"}


def test_api_keys_and_users_are_limited_separately() -> None:
    by_user = Principal("t1", Role.USER, user_id="u1")
    by_key = Principal("t1", Role.USER, user_id="u1", api_key_id="key1")

    assert RateLimiter.key_of(by_user) != RateLimiter.key_of(by_key)


def test_idle_callers_are_forgotten_to_bound_memory() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=10, burst=10, per_hour=100, clock=clock, max_keys=10)

    for i in range(10):
        limiter.hit(f"caller-{i}")
    clock.now += 3 * 3600
    limiter.hit("newcomer")

    assert len(limiter._states) == 1
