"""Metering: usage and cost per call, cached answers marked free, totals per tenant/model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from agentguild.errors import ServerError
from agentguild.llm import ChatChunk, ChatModel, ChatRequest, ChatResponse, ScriptedModel
from agentguild.llm.cache import CachedModel, ResponseCache
from agentguild.llm.metering import (
    CallbackSink,
    MeteredModel,
    Price,
    QueueSink,
    UsageAggregator,
    UsageRecord,
    UsageTotals,
)
from agentguild.types import Message, Usage

REQUEST = ChatRequest(
    [Message.user("What is 2 + 2?")], temperature=0.0, tenant_id="acme", caller_id="key-1"
)
PRICE = Price(input_per_mtok=1.0, output_per_mtok=4.0)


class Records:
    """A sink keeping every record."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def record(self, record: UsageRecord) -> None:
        self.records.append(record)


def answer(prompt: int = 1000, completion: int = 500) -> ChatResponse:
    return ChatResponse(Message.assistant("Four, of course."), Usage(prompt, completion), "stop")


async def collect(model: ChatModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


async def test_call_is_recorded_with_its_tokens_and_cost_from_the_price_table() -> None:
    # Given a model priced at $1 / $4 per million input / output tokens
    sink = Records()
    model = MeteredModel(ScriptedModel([answer()], name="qwen"), prices={"qwen": PRICE}, sink=sink)
    # When it answers with 1000 prompt and 500 completion tokens
    await model.complete(REQUEST)
    # Then one record carries the tenant, caller, tokens and cost
    (record,) = sink.records
    assert (record.tenant_id, record.caller_id, record.model) == ("acme", "key-1", "qwen")
    assert (record.prompt_tokens, record.completion_tokens) == (1000, 500)
    assert record.cost_usd == pytest.approx(0.003)
    assert (record.cached, record.estimated, record.streamed, record.finished) == (
        False,
        False,
        False,
        True,
    )
    assert record.duration_s >= 0


async def test_one_price_applies_to_every_call() -> None:
    sink = Records()
    await MeteredModel(ScriptedModel([answer()]), prices=PRICE, sink=sink).complete(REQUEST)
    assert sink.records[0].cost_usd == pytest.approx(0.003)


async def test_price_is_found_by_the_model_the_provider_reports() -> None:
    sink = Records()
    reported = replace(answer(), model="qwen-plus-2025-01")
    model = MeteredModel(
        ScriptedModel([reported], name="main"), prices={"qwen-plus-2025-01": PRICE}, sink=sink
    )
    await model.complete(REQUEST)
    assert sink.records[0].cost_usd == pytest.approx(0.003)


async def test_unpriced_model_is_recorded_at_zero_cost_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Records()
    model = MeteredModel(ScriptedModel([answer()], cycle=True), prices={"other": PRICE}, sink=sink)
    with caplog.at_level(logging.WARNING, logger="agentguild.metering"):
        for _ in range(3):
            await model.complete(REQUEST)
    assert [r.cost_usd for r in sink.records] == [0.0, 0.0, 0.0]
    assert len(caplog.records) == 1


async def test_stream_is_metered_from_its_final_usage_chunk() -> None:
    sink = Records()
    model = MeteredModel(ScriptedModel([answer()]), prices=PRICE, sink=sink)
    await collect(model, REQUEST)
    (record,) = sink.records
    assert (record.prompt_tokens, record.completion_tokens, record.estimated) == (1000, 500, False)
    assert (record.streamed, record.finished) == (True, True)


class NoUsageModel:
    """Streams 40 characters of text and reports no usage."""

    name = "no-usage"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(Message.assistant("x" * 40))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(text="x" * 20)
        yield ChatChunk(text="x" * 20)
        yield ChatChunk(finish_reason="stop")


@pytest.mark.parametrize("streaming", [False, True])
async def test_usage_is_estimated_and_marked_when_the_provider_reports_none(
    streaming: bool,
) -> None:
    sink = Records()
    model = MeteredModel(NoUsageModel(), prices=PRICE, sink=sink)
    if streaming:
        await collect(model, REQUEST)
    else:
        await model.complete(REQUEST)
    (record,) = sink.records
    assert record.estimated
    assert record.completion_tokens == 10  # 40 characters at ~4 per token
    assert record.prompt_tokens > 0


async def test_stream_closed_early_is_recorded_as_unfinished() -> None:
    sink = Records()
    model = MeteredModel(NoUsageModel(), prices=PRICE, sink=sink)
    stream = model.stream(REQUEST)
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    (record,) = sink.records
    assert (record.finished, record.estimated, record.completion_tokens) == (False, True, 5)


async def test_failed_call_is_not_recorded() -> None:
    sink = Records()
    model = MeteredModel(ScriptedModel([ServerError("down", status=503)]), prices=PRICE, sink=sink)
    with pytest.raises(ServerError):
        await model.complete(REQUEST)
    assert sink.records == []


# ---- cached answers ----------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
async def test_cached_answer_is_recorded_as_cached_at_no_cost_with_its_savings(
    streaming: bool,
) -> None:
    # Given a metered, cached model
    sink = Records()
    cached = CachedModel(ScriptedModel([answer()]), cache=ResponseCache())
    model = MeteredModel(cached, prices=PRICE, sink=sink)
    # When the same request is made twice
    for _ in range(2):
        if streaming:
            await collect(model, REQUEST)
        else:
            await model.complete(REQUEST)
    # Then the first call cost money, the second was free and says what it saved
    first, second = sink.records
    assert (first.cached, first.cost_usd) == (False, pytest.approx(0.003))
    assert (second.cached, second.cost_usd, second.saved_usd) == (True, 0.0, pytest.approx(0.003))
    assert (second.prompt_tokens, second.completion_tokens) == (1000, 500)


class TaskHoppingModel:
    """A wrapper running each inner call in a task of its own (as timeouts do)."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.name = inner.name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return await asyncio.create_task(self.inner.complete(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async for chunk in self.inner.stream(request):
            yield chunk


async def test_cache_hit_is_seen_through_wrappers_that_run_the_call_in_another_task() -> None:
    sink = Records()
    cached = CachedModel(ScriptedModel([answer()]), cache=ResponseCache())
    model = MeteredModel(TaskHoppingModel(cached), prices=PRICE, sink=sink)
    await model.complete(REQUEST)
    await model.complete(REQUEST)
    assert [r.cached for r in sink.records] == [False, True]


async def test_a_cache_hit_does_not_mark_the_next_uncached_call() -> None:
    sink = Records()
    cached = MeteredModel(
        CachedModel(ScriptedModel([answer()]), cache=ResponseCache()), prices=PRICE, sink=sink
    )
    plain = MeteredModel(ScriptedModel([answer()]), prices=PRICE, sink=sink)
    await cached.complete(REQUEST)
    await cached.complete(REQUEST)
    await plain.complete(REQUEST)
    assert [r.cached for r in sink.records] == [False, True, False]


async def test_only_one_of_many_coalesced_requests_is_billed() -> None:
    # Given 10 identical concurrent requests sharing one upstream call
    sink = Records()
    gate = asyncio.Event()

    async def slow_answer(request: ChatRequest) -> ChatResponse:
        await gate.wait()
        return answer()

    class Slow:
        name = "slow"

        async def complete(self, request: ChatRequest) -> ChatResponse:
            return await slow_answer(request)

        async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
            raise NotImplementedError
            yield ChatChunk()

    cached = CachedModel(Slow(), cache=ResponseCache())
    model = MeteredModel(cached, prices=PRICE, sink=sink)
    tasks = [asyncio.create_task(model.complete(REQUEST)) for _ in range(10)]
    for _ in range(1000):  # let every request reach the cache (no timing involved)
        if cached.cache.stats().requests == 10:
            break
        await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    # Then one record is billed and nine are marked cached
    assert sorted(r.cached for r in sink.records) == [False] + [True] * 9
    assert sum(r.cost_usd for r in sink.records) == pytest.approx(0.003)


# ---- sinks -------------------------------------------------------------------------------


def record(tenant: str, model: str, *, cached: bool = False) -> UsageRecord:
    return UsageRecord(
        tenant_id=tenant,
        caller_id=None,
        model=model,
        prompt_tokens=100,
        completion_tokens=10,
        cost_usd=0.0 if cached else 0.5,
        cached=cached,
        duration_s=0.1,
        at=0.0,
        saved_usd=0.5 if cached else 0.0,
    )


def test_aggregator_totals_usage_per_tenant_and_model() -> None:
    usage = UsageAggregator()
    for item in (
        record("acme", "qwen"),
        record("acme", "qwen", cached=True),
        record("acme", "gpt"),
        record("globex", "qwen"),
    ):
        usage.record(item)
    totals = usage.totals()
    assert totals[("acme", "qwen")] == UsageTotals(
        calls=2,
        cached_calls=1,
        prompt_tokens=100,
        completion_tokens=10,
        cached_tokens=110,
        cost_usd=0.5,
        saved_usd=0.5,
    )
    assert usage.total(tenant_id="acme").calls == 3
    assert usage.total(model="qwen").cost_usd == pytest.approx(1.0)
    assert usage.total().calls == 4


def test_aggregator_drain_hands_over_the_totals_and_starts_again() -> None:
    usage = UsageAggregator()
    usage.record(record("acme", "qwen"))
    assert usage.drain()[("acme", "qwen")].calls == 1
    assert usage.totals() == {}


async def test_faulty_callback_does_not_fail_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(record: UsageRecord) -> None:
        raise RuntimeError("database is down")

    sink = CallbackSink(broken)
    model = MeteredModel(ScriptedModel([answer()]), prices=PRICE, sink=sink)
    with caplog.at_level(logging.ERROR, logger="agentguild.metering"):
        response = await model.complete(REQUEST)
    assert response.message.text == "Four, of course."
    assert sink.errors == 1
    assert caplog.records[0].exc_info is not None


async def test_queue_sink_hands_records_to_a_consumer_and_drops_beyond_its_size() -> None:
    sink = QueueSink(maxsize=2)
    model = MeteredModel(ScriptedModel([answer()], cycle=True), prices=PRICE, sink=sink)
    for _ in range(3):
        await model.complete(REQUEST)
    assert sink.queue.qsize() == 2
    assert sink.dropped == 1
    assert (await sink.queue.get()).tenant_id == "acme"
