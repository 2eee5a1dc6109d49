"""RateLimit, InMemoryLimiter (GCRA) and RateLimitedModel: reserve, wait, reconcile, keys."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from agentguild.errors import RateLimitExceeded, ServerError
from agentguild.llm.base import ChatChunk, ChatRequest, ChatResponse
from agentguild.llm.ratelimit import (
    InMemoryLimiter,
    RateLimit,
    RateLimitedModel,
    estimate_tokens,
    limit_key,
)
from agentguild.llm.scripted import ScriptedModel
from agentguild.types import Message, Usage


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def request(
    text: str = "hi", *, tenant: str = "acme", caller: str | None = "key-1", max_tokens: int = 10
) -> ChatRequest:
    return ChatRequest(
        [Message.user(text)], max_tokens=max_tokens, tenant_id=tenant, caller_id=caller
    )


def used(total: int) -> ChatResponse:
    return ChatResponse(Message.assistant("done"), usage=Usage(total - 1, 1))


KEY = limit_key("acme", "key-1", "scripted")


def limited(
    clock: FakeClock,
    limit: RateLimit,
    replies: list[object] | None = None,
    *,
    max_wait_s: float = 0.0,
    tokens: int = 10,
) -> tuple[RateLimitedModel, InMemoryLimiter]:
    limiter = InMemoryLimiter(clock=clock)
    inner = ScriptedModel(replies or [used(tokens)], cycle=replies is None)  # type: ignore[arg-type]
    model = RateLimitedModel(
        inner,
        limiter,
        limit,
        max_wait_s=max_wait_s,
        estimate_tokens=lambda r: tokens,
        sleep=clock.sleep,
    )
    return model, limiter


# ---- the limit and the limiter --------------------------------------------------------------


def test_rate_limit_bursts_default_to_the_per_minute_rate() -> None:
    limit = RateLimit(requests_per_minute=60, tokens_per_minute=1000, burst_tokens=100)
    assert (limit.request_burst, limit.token_burst) == (60, 100)
    assert RateLimit().unlimited
    with pytest.raises(ValueError, match="requests_per_minute"):
        RateLimit(requests_per_minute=0)


async def test_a_burst_is_admitted_at_once_then_requests_refill_at_the_rate() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(clock=clock)
    limit = RateLimit(requests_per_minute=60, burst_requests=3)
    # Given a burst of 3: three are admitted at once, the fourth must wait 1 s (60/min)
    decisions = [await limiter.acquire("k", limit) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].wait_s == pytest.approx(1.0)
    # When half a second passes, still refused; after a full second, one more fits
    clock.advance(0.5)
    assert not (await limiter.acquire("k", limit)).allowed
    clock.advance(0.5)
    assert (await limiter.acquire("k", limit)).allowed
    assert not (await limiter.acquire("k", limit)).allowed


async def test_requests_and_tokens_are_checked_together_and_reserved_only_if_both_fit() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(clock=clock)
    limit = RateLimit(requests_per_minute=10, tokens_per_minute=100, burst_tokens=100)
    assert (await limiter.acquire("k", limit, tokens=80)).allowed
    # The token budget refuses the next call; its request must not be consumed either
    refused = await limiter.acquire("k", limit, tokens=30)
    assert not refused.allowed
    assert refused.wait_s == pytest.approx(6.0)  # 10 tokens short at 100/min
    for _ in range(9):
        assert (await limiter.acquire("k", limit, tokens=1)).allowed


async def test_a_cost_above_the_burst_is_never_admitted() -> None:
    limiter = InMemoryLimiter(clock=FakeClock())
    decision = await limiter.acquire("k", RateLimit(tokens_per_minute=100), tokens=101)
    assert not decision.allowed
    assert math.isinf(decision.wait_s)


async def test_admission_within_max_wait_reserves_a_future_slot() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(clock=clock)
    limit = RateLimit(requests_per_minute=60, burst_requests=1)
    assert (await limiter.acquire("k", limit)).wait_s == 0
    # Two waiting callers get consecutive slots (first come, first served)
    first = await limiter.acquire("k", limit, max_wait_s=5)
    second = await limiter.acquire("k", limit, max_wait_s=5)
    assert first.allowed
    assert first.wait_s == pytest.approx(1.0)
    assert second.allowed
    assert second.wait_s == pytest.approx(2.0)


async def test_refunds_return_capacity_but_never_above_the_burst() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(clock=clock)
    limit = RateLimit(tokens_per_minute=100)
    assert (await limiter.acquire("k", limit, tokens=100)).allowed
    await limiter.adjust("k", limit, tokens=-1000)
    assert (await limiter.acquire("k", limit, tokens=100)).allowed
    assert not (await limiter.acquire("k", limit, tokens=1)).allowed


async def test_charges_beyond_the_budget_become_a_debt() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(clock=clock)
    limit = RateLimit(tokens_per_minute=60)
    await limiter.adjust("k", limit, tokens=120)  # 60 tokens over budget
    decision = await limiter.acquire("k", limit, tokens=1)
    assert decision.wait_s == pytest.approx(61.0)


async def test_refilled_buckets_are_forgotten() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(clock=clock)
    limit = RateLimit(requests_per_minute=60)
    await limiter.acquire("k", limit)
    await limiter.adjust("k", limit, requests=-1)
    assert len(limiter) == 0


def test_limit_keys_are_hash_tagged_and_escaped() -> None:
    assert limit_key("acme", None, "gpt-4o") == "{agentguild:rl:acme:-:gpt-4o}"
    assert limit_key("a:b}", "k{1", "m") == "{agentguild:rl:a%3Ab%7D:k%7B1:m}"
    assert limit_key("a", "b", "c", prefix="x") == "{x:a:b:c}"


def test_token_estimate_counts_prompt_characters_and_the_completion_budget() -> None:
    text = "x" * 392  # + 8 per message = 400 chars = 100 tokens
    assert estimate_tokens(ChatRequest([Message.user(text)], max_tokens=50)) == 150
    assert estimate_tokens(ChatRequest([Message.user(text)]), default_completion_tokens=7) == 107


# ---- the wrapper --------------------------------------------------------------------------


async def test_calls_beyond_the_limit_raise_rate_limit_exceeded_with_retry_after() -> None:
    clock = FakeClock()
    model, _ = limited(clock, RateLimit(requests_per_minute=30, burst_requests=2))
    await model.complete(request())
    await model.complete(request())
    with pytest.raises(RateLimitExceeded, match="'acme'") as raised:
        await model.complete(request())
    assert raised.value.retry_after == pytest.approx(2.0)
    assert raised.value.status == 429


async def test_calls_wait_when_the_wait_is_within_max_wait() -> None:
    # Given one request per second with no burst, and callers willing to wait 1.5 s
    clock = FakeClock()
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    model = RateLimitedModel(
        ScriptedModel(["ok"], cycle=True),
        InMemoryLimiter(clock=clock),
        RateLimit(requests_per_minute=60, burst_requests=1),
        max_wait_s=1.5,
        sleep=record,
    )
    # When three calls arrive at once: the first goes, the second waits for its slot
    await model.complete(request())
    await model.complete(request())
    assert waits == [pytest.approx(1.0)]
    # Then the third, whose slot is 2 s away, is refused
    with pytest.raises(RateLimitExceeded) as raised:
        await model.complete(request())
    assert raised.value.retry_after == pytest.approx(2.0)


async def test_limits_are_per_tenant_caller_and_model() -> None:
    clock = FakeClock()
    model, _ = limited(clock, RateLimit(requests_per_minute=1))
    await model.complete(request(tenant="a", caller="k"))
    await model.complete(request(tenant="b", caller="k"))
    await model.complete(request(tenant="a", caller="other"))
    with pytest.raises(RateLimitExceeded):
        await model.complete(request(tenant="a", caller="k"))


async def test_concurrent_calls_cannot_overshoot_the_limit() -> None:
    clock = FakeClock()
    model, _ = limited(clock, RateLimit(requests_per_minute=100, burst_requests=7))
    results = await asyncio.gather(
        *(model.complete(request()) for _ in range(50)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, ChatResponse)]
    refused = [r for r in results if isinstance(r, RateLimitExceeded)]
    assert (len(admitted), len(refused)) == (7, 43)


async def test_tokens_are_reconciled_with_actual_usage() -> None:
    # Given a 100 tokens/min budget, estimates of 60 tokens and calls that use 20
    limit = RateLimit(tokens_per_minute=100)
    clock = FakeClock()
    model, limiter = limited(clock, limit, [used(20)] * 4, tokens=60)
    # When calls are made, the unused 40 are refunded after each
    for _ in range(3):
        await model.complete(request())
    # Then 3 calls fit where a single estimate-only reservation would (60 tokens used, 40 left)
    with pytest.raises(RateLimitExceeded):
        await model.complete(request())
    assert not (await limiter.acquire(KEY, limit, tokens=41)).allowed
    assert (await limiter.acquire(KEY, limit, tokens=40)).allowed


async def test_usage_beyond_the_estimate_is_charged() -> None:
    clock = FakeClock()
    limit = RateLimit(tokens_per_minute=100)
    model, limiter = limited(clock, limit, [used(90)], tokens=10)
    await model.complete(request())
    assert not (await limiter.acquire(KEY, limit, tokens=11)).allowed


async def test_a_failed_call_gets_its_tokens_back_but_its_request_counts() -> None:
    clock = FakeClock()
    limit = RateLimit(requests_per_minute=2, tokens_per_minute=100)
    model, limiter = limited(clock, limit, [ServerError("down")], tokens=100)
    with pytest.raises(ServerError):
        await model.complete(request())
    assert (await limiter.acquire(KEY, limit, tokens=100)).allowed
    assert not (await limiter.acquire(KEY, limit, tokens=0)).allowed


async def test_a_request_larger_than_the_token_burst_is_refused_without_retry_after() -> None:
    clock = FakeClock()
    model, _ = limited(clock, RateLimit(tokens_per_minute=1000, burst_tokens=50), tokens=51)
    with pytest.raises(RateLimitExceeded, match="lower max_tokens") as raised:
        await model.complete(request())
    assert raised.value.retry_after is None


async def test_streams_are_limited_and_reconciled_with_the_usage_chunk() -> None:
    clock = FakeClock()
    limit = RateLimit(tokens_per_minute=100)
    model, limiter = limited(clock, limit, [used(30), used(30)], tokens=90)
    chunks = [chunk async for chunk in model.stream(request())]
    assert chunks[-1].usage == Usage(29, 1)
    assert (await limiter.acquire(KEY, limit, tokens=70)).allowed


async def test_a_cancelled_wait_never_lets_its_slot_be_booked_twice() -> None:
    clock = FakeClock()
    limit = RateLimit(requests_per_minute=60, burst_requests=1)
    limiter = InMemoryLimiter(clock=clock)

    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    model = RateLimitedModel(
        ScriptedModel(["ok"], cycle=True), limiter, limit, max_wait_s=10, sleep=never
    )
    await model.complete(request())
    waiting = asyncio.create_task(model.complete(request()))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The refund cannot rewind past a slot scheduled in the future (the limiter does not
    # know whose slot it is), so the next caller queues behind it: never two in one slot.
    decision = await limiter.acquire(limit_key("acme", "key-1", "scripted"), limit, max_wait_s=9)
    assert decision.wait_s == pytest.approx(2.0)


async def test_limits_can_depend_on_the_request_and_none_means_unlimited() -> None:
    clock = FakeClock()
    limiter = InMemoryLimiter(clock=clock)

    def per_tenant(req: ChatRequest) -> RateLimit | None:
        return None if req.tenant_id == "vip" else RateLimit(requests_per_minute=1)

    model = RateLimitedModel(ScriptedModel(["ok"], cycle=True), limiter, per_tenant)
    for _ in range(5):
        await model.complete(request(tenant="vip"))
    await model.complete(request(tenant="free"))
    with pytest.raises(RateLimitExceeded):
        await model.complete(request(tenant="free"))


class UsageStream:
    """Streams text and a final usage chunk (like an OpenAI stream with include_usage)."""

    @property
    def name(self) -> str:
        return "usage-stream"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(text="a")
        yield ChatChunk(finish_reason="stop", usage=Usage(3, 2))


async def test_an_abandoned_stream_keeps_its_estimate() -> None:
    clock = FakeClock()
    limit = RateLimit(tokens_per_minute=100)
    limiter = InMemoryLimiter(clock=clock)
    model = RateLimitedModel(UsageStream(), limiter, limit, estimate_tokens=lambda r: 60)
    stream = model.stream(request())
    await anext(aiter(stream))
    await stream.aclose()  # type: ignore[attr-defined]
    key = limit_key("acme", "key-1", "usage-stream")
    assert not (await limiter.acquire(key, limit, tokens=41)).allowed


async def test_a_refund_never_hands_out_a_slot_promised_to_a_waiting_caller() -> None:
    # Found by the property test: burst 1 token, 2 tokens/s.
    clock = FakeClock()
    limit = RateLimit(requests_per_minute=600, tokens_per_minute=120, burst_tokens=1)
    limiter = InMemoryLimiter(clock=clock)
    first = await limiter.acquire("k", limit, tokens=1)
    waiting = await limiter.acquire("k", limit, tokens=1, max_wait_s=0.5)
    assert (first.wait_s, waiting.wait_s) == (0.0, pytest.approx(0.5))
    # When the first call reports it used nothing, its token comes back...
    await limiter.adjust("k", limit, tokens=-1)
    # ...but the waiting caller's slot at +0.5 s is not given to a newcomer as well.
    newcomer = await limiter.acquire("k", limit, tokens=1, max_wait_s=0.5)
    assert not newcomer.allowed
