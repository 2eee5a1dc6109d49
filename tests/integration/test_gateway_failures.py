"""Retry, breaker, timeout and router wrappers over real HTTP, against injected failures.

Each test talks to `FakeLLMServer`s through `OpenAICompatModel`, so failures arrive the
way providers send them (429 + Retry-After, 5xx, hung connections, broken bodies) and
are mapped to typed errors by the real client. Backoff sleeps and breaker clocks are
fakes: nothing here waits for a retry delay or a cooldown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from agentguild.errors import (
    BadRequestError,
    CircuitOpenError,
    MalformedResponseError,
    ModelConnectionError,
    RateLimitError,
    ServerError,
)
from agentguild.llm.base import ChatChunk, ChatModel, ChatRequest
from agentguild.llm.openai_compat import OpenAICompatModel
from agentguild.llm.resilience import (
    BreakerModel,
    BreakerState,
    CircuitBreaker,
    RetryBudget,
    RetryingModel,
    TimeoutModel,
)
from agentguild.llm.router import Deployment, Router
from agentguild.testing import (
    DropConnection,
    ErrorReply,
    FakeLLMServer,
    Hang,
    MalformedReply,
    Reply,
    ScriptItem,
)
from agentguild.types import Message

REQUEST = ChatRequest([Message.user("Hello gateway")])


class FakeTime:
    """A clock and a sleep that records the delays asked for and moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def state(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state (via a call, so type checkers do not pin it between asserts)."""
    return breaker.state


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def serve(stack: AsyncExitStack, *script: ScriptItem, **options: Any) -> FakeLLMServer:
    return await stack.enter_async_context(FakeLLMServer(*script, **options))


async def client(stack: AsyncExitStack, server: FakeLLMServer, name: str) -> OpenAICompatModel:
    model = OpenAICompatModel("fake-model", base_url=server.base_url, api_key="k", name=name)
    stack.push_async_callback(model.aclose)
    return model


def retrying(model: ChatModel, time: FakeTime, **options: Any) -> RetryingModel:
    return RetryingModel(
        model, sleep=time.sleep, random=lambda: 0.0, budget=RetryBudget.unlimited(), **options
    )


def always(item: Callable[[], ScriptItem]) -> Callable[[dict[str, Any]], ScriptItem]:
    return lambda request: item()


async def collect(chunks: AsyncIterator[ChatChunk], into: list[ChatChunk]) -> None:
    async for chunk in chunks:
        into.append(chunk)


# ---- retries -------------------------------------------------------------------------------


async def test_retry_sequence_honours_retry_after(stack: AsyncExitStack) -> None:
    # Given a provider that rate limits twice, asking for 2 s then 0.5 s, then answers
    server = await serve(
        stack, ErrorReply.rate_limited(2), ErrorReply.rate_limited(0.5), Reply("at last")
    )
    time = FakeTime()
    model = retrying(await client(stack, server, "p"), time, max_attempts=3)
    # When called
    response = await model.complete(REQUEST)
    # Then it waited exactly what the provider asked for, then succeeded
    assert response.message.text == "at last"
    assert time.sleeps == [2.0, 0.5]
    assert server.request_count == 3


async def test_a_retry_after_above_the_cap_fails_fast(stack: AsyncExitStack) -> None:
    server = await serve(stack, ErrorReply.rate_limited(120), Reply("too late"))
    time = FakeTime()
    model = retrying(await client(stack, server, "p"), time, max_retry_after_s=60)
    with pytest.raises(RateLimitError) as raised:
        await model.complete(REQUEST)
    assert raised.value.retry_after == 120
    assert time.sleeps == []
    assert server.request_count == 1


async def test_5xx_malformed_and_dropped_answers_are_retried(stack: AsyncExitStack) -> None:
    server = await serve(
        stack,
        ErrorReply.server_error(503),
        MalformedReply(),
        DropConnection(),
        ErrorReply.server_error(500),
        Reply("recovered"),
    )
    time = FakeTime()
    model = retrying(await client(stack, server, "p"), time, max_attempts=5)
    assert (await model.complete(REQUEST)).message.text == "recovered"
    assert server.request_count == 5


async def test_client_errors_are_not_retried(stack: AsyncExitStack) -> None:
    server = await serve(stack, ErrorReply.bad_request("invalid 'tools'"), Reply("never"))
    model = retrying(await client(stack, server, "p"), FakeTime())
    with pytest.raises(BadRequestError):
        await model.complete(REQUEST)
    assert server.request_count == 1


async def test_a_hung_call_times_out_and_is_retried(stack: AsyncExitStack) -> None:
    server = await serve(stack, Hang(), Reply("second try"))
    time = FakeTime()
    model = retrying(TimeoutModel(await client(stack, server, "p"), total_s=0.2), time)
    assert (await model.complete(REQUEST)).message.text == "second try"
    assert server.request_count == 2


async def test_a_stream_is_retried_only_before_its_first_chunk(stack: AsyncExitStack) -> None:
    # Given a stream that fails before any chunk, then one cut midway
    server = await serve(
        stack, ErrorReply.server_error(502), Reply("whole answer"), DropConnection(after_chunks=2)
    )
    model = retrying(await client(stack, server, "p"), FakeTime())
    # Then the first failure is retried transparently
    received: list[ChatChunk] = []
    await collect(model.stream(REQUEST), received)
    assert "".join(c.text for c in received) == "whole answer"
    assert server.request_count == 2
    # And the mid-stream cut is raised after the chunks the caller already has
    partial: list[ChatChunk] = []
    with pytest.raises(ModelConnectionError):
        await collect(model.stream(REQUEST), partial)
    assert partial
    assert server.request_count == 3


# ---- circuit breaker -----------------------------------------------------------------------


async def test_breaker_goes_closed_open_half_open_closed(stack: AsyncExitStack) -> None:
    server = await serve(
        stack,
        *[ErrorReply.server_error(500)] * 3,
        Reply("probe ok", latency=0.05),
        Reply("flowing again"),
    )
    time = FakeTime()
    states: list[BreakerState] = []
    breaker = CircuitBreaker(
        name="east",
        failure_rate=0.5,
        min_requests=3,
        cooldown_s=30,
        clock=time,
        on_transition=lambda name, old, new: states.append(new),
    )
    model = BreakerModel(await client(stack, server, "east"), breaker)
    # Closed: three provider failures open it
    for _ in range(3):
        with pytest.raises(ServerError):
            await model.complete(REQUEST)
    assert state(breaker) == "open"
    # Open: calls are refused without reaching the provider
    with pytest.raises(CircuitOpenError):
        await model.complete(REQUEST)
    assert server.request_count == 3
    # Half-open after the cooldown: one probe goes through, a concurrent call is refused
    time.now += 30
    assert state(breaker) == "half_open"
    probe = asyncio.create_task(model.complete(REQUEST))
    await asyncio.sleep(0)  # the probe takes its permit before its first await
    with pytest.raises(CircuitOpenError, match="probe"):
        await model.complete(REQUEST)
    # Closed again once the probe succeeds
    assert (await probe).message.text == "probe ok"
    assert state(breaker) == "closed"
    assert (await model.complete(REQUEST)).message.text == "flowing again"
    assert states == ["open", "half_open", "closed"]


# ---- router --------------------------------------------------------------------------------


async def test_a_fallback_answers_when_every_deployment_of_the_primary_fails(
    stack: AsyncExitStack,
) -> None:
    # Given a primary with two deployments that both fail every call, in different ways
    east = await serve(stack, responder=always(lambda: ErrorReply.server_error(503)))
    west = await serve(stack, responder=always(DropConnection))
    backup = await serve(stack, Reply("from the fallback model"))
    time = FakeTime()
    primary = [
        Deployment(retrying(await client(stack, server, name), time), breaker=CircuitBreaker())
        for server, name in ((east, "east"), (west, "west"))
    ]
    router = Router(
        primary, fallbacks=[retrying(await client(stack, backup, "backup"), time)], name="gpt"
    )
    # When called, then the fallback answers, after each deployment used its retries
    response = await router.complete(REQUEST)
    assert response.message.text == "from the fallback model"
    assert (east.request_count, west.request_count, backup.request_count) == (3, 3, 1)
    assert [s.failures for s in router.stats()] == [1, 1]


async def test_router_skips_a_deployment_whose_breaker_opened(stack: AsyncExitStack) -> None:
    broken = await serve(stack, responder=always(lambda: ErrorReply.server_error(500)))
    healthy = await serve(stack)
    time = FakeTime()
    breaker = CircuitBreaker(name="broken", min_requests=2, cooldown_s=60, clock=time)
    router = Router(
        [
            Deployment(await client(stack, broken, "broken"), breaker=breaker),
            Deployment(await client(stack, healthy, "healthy")),
        ],
        strategy="round_robin",
    )
    answers = [(await router.complete(REQUEST)).message.text for _ in range(6)]
    assert answers == ["Hello gateway"] * 6
    assert state(breaker) == "open"
    assert broken.request_count == 2


async def test_context_overflow_goes_to_the_long_context_model(stack: AsyncExitStack) -> None:
    small = await serve(stack, ErrorReply.context_length_exceeded())
    ordinary = await serve(stack)
    large = await serve(stack, Reply("read it all"))
    router = Router(
        [Deployment(await client(stack, small, "small"))],
        fallbacks=[await client(stack, ordinary, "ordinary")],
        context_fallbacks=[await client(stack, large, "large")],
    )
    assert (await router.complete(REQUEST)).message.text == "read it all"
    assert ordinary.request_count == 0


async def test_router_stream_fails_over_before_the_first_chunk(stack: AsyncExitStack) -> None:
    down = await serve(stack, ErrorReply.server_error(503))
    up = await serve(stack, Reply("streamed from the second deployment"))
    router = Router(
        [Deployment(await client(stack, down, "down")), Deployment(await client(stack, up, "up"))],
        strategy="round_robin",
    )
    received: list[ChatChunk] = []
    await collect(router.stream(REQUEST), received)
    assert "".join(c.text for c in received) == "streamed from the second deployment"


async def test_a_mid_stream_malformed_event_is_not_failed_over(stack: AsyncExitStack) -> None:
    broken = await serve(stack, MalformedReply(after_chunks=2))
    other = await serve(stack)
    router = Router(
        [Deployment(await client(stack, broken, "b")), Deployment(await client(stack, other, "o"))],
        strategy="round_robin",
    )
    with pytest.raises(MalformedResponseError):
        await collect(router.stream(REQUEST), [])
    assert other.request_count == 0
