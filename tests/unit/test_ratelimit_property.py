"""Property: however concurrent requests interleave, admissions never exceed limit + burst.

A run is a random interleaving of the operations concurrent requests make against a
limiter: reserve (with a random token cost, possibly willing to wait), and reconcile
(refund the unused part of an earlier reservation), separated by random gaps of
simulated time, zero gaps included (simultaneous arrivals). For every window
`[a, b]`, the requests started and the net tokens used in it must stay within
`burst + rate * (b - a)`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentguild.llm.ratelimit import Decision, InMemoryLimiter, RateLimit

EPSILON = 1e-6


@dataclass(frozen=True)
class Reserve:
    gap_ms: int
    tokens: int
    max_wait_ms: int


@dataclass(frozen=True)
class Reconcile:
    gap_ms: int
    pick: int
    """Which outstanding reservation (modulo their number) reports its usage."""
    used_share: float
    """The share of its reserved tokens it actually used (the rest is refunded)."""


Operation = Reserve | Reconcile


@dataclass(frozen=True)
class Scenario:
    limit: RateLimit
    operations: list[Operation]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    limit = RateLimit(
        requests_per_minute=draw(st.integers(1, 600)),
        tokens_per_minute=draw(st.integers(10, 20_000)),
        burst_requests=draw(st.none() | st.integers(1, 20)),
        burst_tokens=draw(st.none() | st.integers(1, 5_000)),
    )
    token_cap = (limit.token_burst or 1) + 10  # some costs exceed the burst
    gap = st.integers(0, 3_000) | st.just(0)
    reserve = st.builds(
        Reserve,
        gap_ms=gap,
        tokens=st.integers(0, token_cap),
        max_wait_ms=st.sampled_from([0, 0, 500, 5_000]),
    )
    reconcile = st.builds(
        Reconcile,
        gap_ms=gap,
        pick=st.integers(0, 1_000),
        used_share=st.floats(0, 1),
    )
    operations = draw(st.lists(reserve | reconcile, min_size=1, max_size=60))
    return Scenario(limit, operations)


@dataclass
class Ledger:
    """What the limiter admitted: (time, amount) events per budget."""

    requests: list[tuple[float, int]] = field(default_factory=list)
    tokens: list[tuple[float, int]] = field(default_factory=list)


Acquire = Callable[[RateLimit, int, float], Awaitable[Decision]]
Refund = Callable[[RateLimit, int], Awaitable[None]]


async def play(scenario: Scenario, acquire: Acquire, refund: Refund, clock: list[float]) -> Ledger:
    """Run the scenario's operations in order; `clock[0]` is the simulated time (s)."""
    ledger = Ledger()
    outstanding: list[tuple[float, int]] = []  # (start time, reserved tokens)
    for operation in scenario.operations:
        clock[0] += operation.gap_ms / 1000
        now = clock[0]
        if isinstance(operation, Reserve):
            decision = await acquire(scenario.limit, operation.tokens, operation.max_wait_ms / 1000)
            if decision.allowed:
                assert decision.wait_s <= operation.max_wait_ms / 1000 + EPSILON
                start = now + decision.wait_s
                ledger.requests.append((start, 1))
                ledger.tokens.append((start, operation.tokens))
                outstanding.append((start, operation.tokens))
            else:
                assert decision.wait_s > operation.max_wait_ms / 1000 - EPSILON
            continue
        started = [entry for entry in outstanding if entry[0] <= now]
        if not started:
            continue
        entry = started[operation.pick % len(started)]
        outstanding.remove(entry)
        unused = entry[1] - math.floor(entry[1] * operation.used_share)
        if unused:
            await refund(scenario.limit, -unused)
            ledger.tokens.append((now, -unused))
    return ledger


def assert_within_limit(events: list[tuple[float, int]], burst: int, per_minute: int) -> None:
    """Net amount in every window [a, b] between two admissions <= burst + rate * (b - a)."""
    starts = sorted(time for time, amount in events if amount > 0)
    for a in starts:
        for b in starts:
            if b < a:
                continue
            used = sum(amount for time, amount in events if a <= time <= b)
            allowed = burst + per_minute * (b - a) / 60
            assert used <= allowed + EPSILON, (
                f"{used} admitted in [{a}, {b}], limit allows {allowed}"
            )


def check(scenario: Scenario, ledger: Ledger) -> None:
    limit = scenario.limit
    assert limit.requests_per_minute is not None
    assert limit.request_burst is not None
    assert limit.tokens_per_minute is not None
    assert limit.token_burst is not None
    assert_within_limit(ledger.requests, limit.request_burst, limit.requests_per_minute)
    assert_within_limit(ledger.tokens, limit.token_burst, limit.tokens_per_minute)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_in_memory_admissions_never_exceed_limit_plus_burst(scenario: Scenario) -> None:
    clock = [1_000.0]
    limiter = InMemoryLimiter(clock=lambda: clock[0])

    async def acquire(limit: RateLimit, tokens: int, max_wait_s: float) -> Decision:
        return await limiter.acquire("key", limit, tokens=tokens, max_wait_s=max_wait_s)

    async def refund(limit: RateLimit, tokens: int) -> None:
        await limiter.adjust("key", limit, tokens=tokens)

    ledger = asyncio.run(play(scenario, acquire, refund, clock))
    check(scenario, ledger)
