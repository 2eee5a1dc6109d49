"""Single-flight: concurrent identical misses share one upstream call, errors and all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from agentguild.errors import ServerError
from agentguild.llm import ChatChunk, ChatModel, ChatRequest, ChatResponse
from agentguild.llm.cache import CachedModel, ResponseCache
from agentguild.types import Message, Usage

REQUEST = ChatRequest([Message.user("What is 2 + 2?")], temperature=0.0)
CHUNKS = (ChatChunk(text="Four"), ChatChunk(text=", of course."))


class GatedModel:
    """Holds every call until `gate` opens; streams chunk by chunk, each behind `steps`."""

    name = "gated"

    def __init__(self, *, error: Exception | None = None, stepped: bool = False) -> None:
        self.gate = asyncio.Event()
        self.error = error
        self.stepped = stepped
        self.steps: asyncio.Queue[None] = asyncio.Queue()
        self.calls = 0
        self.cancelled = 0

    async def _wait(self) -> None:
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        await self._wait()
        return ChatResponse(Message.assistant("Four, of course."), Usage(5, 4))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        await self._wait()
        for chunk in CHUNKS:
            if self.stepped:
                await self.steps.get()
            yield chunk
        yield ChatChunk(finish_reason="stop", usage=Usage(5, 4))


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until `condition` holds (no timing involved)."""
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def collect(model: ChatModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


async def test_1000_concurrent_identical_requests_make_exactly_one_upstream_call() -> None:
    # Given 1000 identical requests all waiting on one slow upstream call
    inner = GatedModel()
    model = CachedModel(inner, cache=ResponseCache())
    tasks = [asyncio.create_task(model.complete(REQUEST)) for _ in range(1000)]
    await until(lambda: model.cache.stats().requests == 1000)
    # When the upstream call answers
    inner.gate.set()
    responses = await asyncio.gather(*tasks)
    # Then it was the only one, and everybody got its answer
    assert inner.calls == 1
    assert {r.message.text for r in responses} == {"Four, of course."}
    stats = model.cache.stats()
    assert (stats.misses, stats.coalesced) == (1, 999)


async def test_1000_concurrent_identical_streams_make_one_upstream_call_and_replay_it_all() -> None:
    inner = GatedModel()
    model = CachedModel(inner, cache=ResponseCache())
    tasks = [asyncio.create_task(collect(model, REQUEST)) for _ in range(1000)]
    await until(lambda: model.cache.stats().requests == 1000)
    inner.gate.set()
    results = await asyncio.gather(*tasks)
    assert inner.calls == 1
    assert all(chunks == results[0] for chunks in results)
    assert [c.text for c in results[0][:2]] == ["Four", ", of course."]


async def test_stream_and_complete_requests_share_one_upstream_call() -> None:
    inner = GatedModel()
    model = CachedModel(inner, cache=ResponseCache())
    streamed = asyncio.create_task(collect(model, REQUEST))
    completed = asyncio.create_task(model.complete(REQUEST))
    await until(lambda: model.cache.stats().requests == 2)
    inner.gate.set()
    chunks, response = await streamed, await completed
    assert inner.calls == 1
    assert response.message.text == "".join(c.text for c in chunks) == "Four, of course."


async def test_waiting_streams_receive_chunks_as_they_arrive_upstream() -> None:
    # Given a follower stream behind a leader whose upstream sends one chunk at a time
    inner = GatedModel(stepped=True)
    model = CachedModel(inner, cache=ResponseCache())
    leader, follower = model.stream(REQUEST), model.stream(REQUEST)
    leader_first = asyncio.create_task(anext(leader))
    await until(lambda: inner.calls == 1)
    follower_first = asyncio.create_task(anext(follower))
    await until(lambda: model.cache.stats().coalesced == 1)
    # When upstream has produced only its first chunk
    inner.gate.set()
    inner.steps.put_nowait(None)
    # Then both already have it, while the upstream call is still going
    assert await leader_first == await follower_first == CHUNKS[0]
    assert inner.steps.empty()
    inner.steps.put_nowait(None)
    follower_rest = [c async for c in follower]
    leader_rest = [c async for c in leader]
    assert follower_rest == leader_rest
    assert follower_rest[:1] == [CHUNKS[1]]


async def test_every_waiting_request_gets_the_upstream_error_and_nothing_is_cached() -> None:
    # Given 50 identical requests waiting on an upstream call that fails
    inner = GatedModel(error=ServerError("upstream down", status=503))
    model = CachedModel(inner, cache=ResponseCache())
    tasks = [asyncio.create_task(model.complete(REQUEST)) for _ in range(50)]
    await until(lambda: model.cache.stats().requests == 50)
    inner.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    # Then every one of them fails with that error, after one upstream call
    assert inner.calls == 1
    assert all(isinstance(r, ServerError) for r in results)
    # And the next request tries upstream again
    inner.error = None
    assert (await model.complete(REQUEST)).message.text == "Four, of course."
    assert inner.calls == 2


@pytest.mark.parametrize("streaming", [False, True])
async def test_cancelling_the_first_request_does_not_hang_the_others(streaming: bool) -> None:
    # Given a first request that started the upstream call, and two that joined it
    inner = GatedModel()
    model = CachedModel(inner, cache=ResponseCache())

    async def call() -> str:
        if streaming:
            return "".join([c.text for c in await collect(model, REQUEST)])
        return (await model.complete(REQUEST)).message.text

    first = asyncio.create_task(call())
    await until(lambda: inner.calls == 1)
    others = [asyncio.create_task(call()) for _ in range(2)]
    await until(lambda: model.cache.stats().coalesced == 2)
    # When the first request is cancelled, then upstream answers
    first.cancel()
    await until(first.done)
    inner.gate.set()
    # Then the others get the answer of that same, single upstream call
    assert await asyncio.gather(*others) == ["Four, of course."] * 2
    assert (inner.calls, inner.cancelled) == (1, 0)


async def test_upstream_call_is_cancelled_when_every_waiting_request_is() -> None:
    inner = GatedModel()
    model = CachedModel(inner, cache=ResponseCache())
    tasks = [asyncio.create_task(model.complete(REQUEST)) for _ in range(3)]
    await until(lambda: inner.calls == 1 and model.cache.stats().requests == 3)
    for task in tasks:
        task.cancel()
    await model.cache.flush()
    assert inner.cancelled == 1
    # And a later request starts a fresh upstream call rather than joining the dead one
    inner.gate.set()
    assert (await model.complete(REQUEST)).message.text == "Four, of course."
    assert inner.calls == 2
