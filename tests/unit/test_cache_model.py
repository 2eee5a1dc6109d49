"""CachedModel: hits, tenant isolation, policies, errors, streaming replay, TTLs."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agentguild.errors import ConfigError, ServerError
from agentguild.llm import (
    ChatChunk,
    ChatModel,
    ChatRequest,
    ChatResponse,
    ScriptedModel,
    ToolCallDelta,
    tool_call,
)
from agentguild.llm.cache import CachedModel, DiskStore, MemoryStore, ResponseCache
from agentguild.types import Message, Usage


def ask(text: str = "What is 2 + 2?", **fields: Any) -> ChatRequest:
    fields.setdefault("temperature", 0.0)
    return ChatRequest([Message.user(text)], **fields)


def numbered() -> ScriptedModel:
    """Answers 'answer 1', 'answer 2', ...: a fresh upstream answer is told from a cached one."""
    count = itertools.count(1)
    return ScriptedModel([lambda request: f"answer {next(count)}"], cycle=True)


async def collect(model: ChatModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


async def consume_into(seen: list[ChatChunk], chunks: AsyncIterator[ChatChunk]) -> None:
    async for chunk in chunks:
        seen.append(chunk)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- hits and keys ---------------------------------------------------------------------


async def test_repeated_request_is_answered_from_the_cache() -> None:
    # Given a cached model
    inner = numbered()
    model = CachedModel(inner, cache=ResponseCache())
    # When the same request is made twice
    first = await model.complete(ask())
    second = await model.complete(ask())
    # Then upstream answered once and both got its answer
    assert (first.message.text, second.message.text) == ("answer 1", "answer 1")
    assert len(inner.requests) == 1
    stats = model.cache.stats()
    assert (stats.requests, stats.l1_hits, stats.misses, stats.hit_rate) == (2, 1, 1, 0.5)


async def test_identical_requests_of_two_tenants_never_share_an_answer() -> None:
    # Given one cache, and tenant "acme"'s answer cached
    inner = numbered()
    model = CachedModel(inner, cache=ResponseCache())
    acme = await model.complete(ask(tenant_id="acme"))
    # When tenant "globex" makes the identical request
    globex = await model.complete(ask(tenant_id="globex"))
    # Then it gets its own upstream answer, not acme's
    assert (acme.message.text, globex.message.text) == ("answer 1", "answer 2")
    assert len(inner.requests) == 2


async def test_users_of_one_tenant_share_an_answer() -> None:
    inner = numbered()
    model = CachedModel(inner, cache=ResponseCache())
    await model.complete(ask(tenant_id="acme", caller_id="alice"))
    answer = await model.complete(ask(tenant_id="acme", caller_id="bob"))
    assert answer.message.text == "answer 1"
    assert len(inner.requests) == 1


async def test_models_sharing_a_cache_do_not_answer_for_each_other() -> None:
    cache = ResponseCache()
    small = CachedModel(ScriptedModel(["small"], name="small"), cache=cache)
    large = CachedModel(ScriptedModel(["large"], name="large"), cache=cache)
    assert (await small.complete(ask())).message.text == "small"
    assert (await large.complete(ask())).message.text == "large"


async def test_cached_model_reports_the_inner_models_name() -> None:
    assert CachedModel(ScriptedModel([], name="qwen"), cache=ResponseCache()).name == "qwen"


def test_unknown_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sometimes"):
        CachedModel(ScriptedModel([]), cache=ResponseCache(), policy="sometimes")  # type: ignore[arg-type]


# ---- errors ------------------------------------------------------------------------------


async def test_errors_are_never_cached() -> None:
    # Given a model failing once, then answering
    inner = ScriptedModel([ServerError("upstream down", status=503), "recovered"])
    model = CachedModel(inner, cache=ResponseCache())
    # When a request fails
    with pytest.raises(ServerError):
        await model.complete(ask())
    # Then the same request goes upstream again instead of replaying the failure
    assert (await model.complete(ask())).message.text == "recovered"
    assert len(inner.requests) == 2


# ---- policies ----------------------------------------------------------------------------


async def test_deterministic_policy_does_not_cache_sampled_requests() -> None:
    # Given the default policy and a request sampled at temperature 0.7 without a seed
    inner = numbered()
    model = CachedModel(inner, cache=ResponseCache())
    sampled = ask(temperature=0.7)
    # When it is made twice
    answers = [(await model.complete(sampled)).message.text for _ in range(2)]
    # Then each went upstream, counted as bypassing the cache
    assert answers == ["answer 1", "answer 2"]
    assert model.cache.stats().bypassed == 2


@pytest.mark.parametrize("fields", [{"temperature": 0.0}, {"temperature": 0.7, "seed": 42}])
async def test_deterministic_policy_caches_zero_temperature_and_seeded_requests(
    fields: dict[str, Any],
) -> None:
    inner = numbered()
    model = CachedModel(inner, cache=ResponseCache())
    for _ in range(2):
        await model.complete(ask(**fields))
    assert len(inner.requests) == 1


async def test_always_policy_caches_sampled_requests() -> None:
    inner = numbered()
    model = CachedModel(inner, cache=ResponseCache(), policy="always")
    for _ in range(2):
        await model.complete(ask(temperature=1.0))
    assert len(inner.requests) == 1


async def test_off_policy_never_caches() -> None:
    inner = numbered()
    model = CachedModel(inner, cache=ResponseCache(), policy="off")
    for _ in range(2):
        await model.complete(ask())
        await collect(model, ask())
    assert len(inner.requests) == 4


# ---- streaming -----------------------------------------------------------------------------


async def test_streaming_hit_replays_the_same_chunk_sequence() -> None:
    # Given a streamed answer with text and a tool call, cached on the first stream
    reply = Message.assistant("Let me add these.", tool_calls=[tool_call("add", a=2, b=3)])
    inner = ScriptedModel([reply])
    model = CachedModel(inner, cache=ResponseCache())
    original = await collect(model, ask())
    # When the request is streamed again
    replayed = await collect(model, ask())
    # Then the very same chunks come back (not one blob), without an upstream call
    assert replayed == original
    assert len(original) > 3
    assert any(chunk.tool_calls for chunk in replayed)
    assert len(inner.requests) == 1


async def test_streamed_answer_serves_a_later_complete() -> None:
    inner = ScriptedModel(["Four, of course."])
    model = CachedModel(inner, cache=ResponseCache())
    await collect(model, ask())
    response = await model.complete(ask())
    assert response.message.text == "Four, of course."
    assert len(inner.requests) == 1


async def test_complete_answer_serves_a_later_stream() -> None:
    # Given an answer cached by complete()
    call = tool_call("add", a=1, b=2)
    inner = ScriptedModel([Message.assistant("Adding.", tool_calls=[call])])
    model = CachedModel(inner, cache=ResponseCache())
    original = await model.complete(ask())
    # When the request is streamed
    chunks = await collect(model, ask())
    # Then the chunks add up to the cached response
    assert chunks[0].text == "Adding."
    assert chunks[1].tool_calls == (ToolCallDelta(0, call.id, "add", call.arguments),)
    assert (chunks[-1].finish_reason, chunks[-1].usage) == ("tool_calls", original.usage)
    assert len(inner.requests) == 1


class UnfinishedStreamModel:
    """Streams text but never a finish reason (a provider that cut the stream short)."""

    name = "unfinished"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        yield ChatChunk(text="partial")


async def test_stream_that_ends_without_a_finish_reason_is_not_cached() -> None:
    inner = UnfinishedStreamModel()
    model = CachedModel(inner, cache=ResponseCache())
    for _ in range(2):
        assert await collect(model, ask()) == [ChatChunk(text="partial")]
    assert inner.calls == 2


class StalledStreamModel:
    """Streams one chunk, then waits for more forever (until cancelled)."""

    name = "stalled"

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        yield ChatChunk(text="one ")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        yield ChatChunk(finish_reason="stop")  # pragma: no cover - never reached


async def test_stream_closed_early_is_not_cached_and_its_upstream_call_is_cancelled() -> None:
    # Given a consumer that stops reading after the first chunk of an unfinished stream
    inner = StalledStreamModel()
    model = CachedModel(inner, cache=ResponseCache())
    stream = model.stream(ask())
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    await model.cache.flush()
    # Then the upstream stream was cancelled (nobody reads it), and nothing was cached
    assert inner.cancelled == 1
    assert model.cache.stats().l1_entries == 0


class FailingMidStreamModel:
    """Streams one chunk, then fails."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        yield ChatChunk(text="The answer is")
        raise ServerError("connection reset mid-stream", status=502)


async def test_stream_failing_midway_delivers_its_chunks_then_the_error_and_is_not_cached() -> None:
    inner = FailingMidStreamModel()
    model = CachedModel(inner, cache=ResponseCache())
    for _ in range(2):
        seen: list[ChatChunk] = []
        with pytest.raises(ServerError):
            await consume_into(seen, model.stream(ask()))
        assert seen == [ChatChunk(text="The answer is")]
    assert inner.calls == 2


# ---- TTL and tiers ---------------------------------------------------------------------


async def test_answer_expires_after_the_ttl() -> None:
    # Given an answer cached for 60 s
    clock = FakeClock()
    inner = numbered()
    model = CachedModel(inner, cache=ResponseCache(MemoryStore(clock=clock)), ttl_s=60)
    await model.complete(ask())
    # When 61 s pass
    clock.now += 61
    # Then the request goes upstream again
    assert (await model.complete(ask())).message.text == "answer 2"


async def test_disk_l2_answers_another_process_after_a_restart(tmp_path: Path) -> None:
    # Given an answer cached through an on-disk L2, whose process then ends
    path = tmp_path / "cache.sqlite3"
    first = CachedModel(numbered(), cache=ResponseCache(l2=DiskStore(path)))
    original = await collect(first, ask())
    await first.cache.aclose()
    # When a fresh process (empty L1) asks the same
    inner = numbered()
    second = CachedModel(inner, cache=ResponseCache(l2=DiskStore(path)))
    replayed = await collect(second, ask())
    again = await second.complete(ask())
    # Then L2 answered, chunk for chunk, and the hit was copied into L1
    assert replayed == original
    assert again.message.text == "answer 1"
    assert inner.requests == []
    stats = second.cache.stats()
    assert (stats.l2_hits, stats.l1_hits, stats.misses) == (1, 1, 0)
    await second.cache.aclose()


async def test_response_usage_and_model_are_kept() -> None:
    inner = ScriptedModel([ChatResponse(Message.assistant("hi"), Usage(7, 1), "stop", "m-1")])
    model = CachedModel(inner, cache=ResponseCache())
    await model.complete(ask())
    cached = await model.complete(replace(ask(), caller_id="someone-else"))
    assert (cached.usage, cached.model) == (Usage(7, 1), "m-1")
