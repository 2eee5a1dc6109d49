"""Router: strategies, open circuits skipped, failover, fallbacks, context fallbacks, streams."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable

import pytest

from agentguild.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigError,
    ContextLengthError,
    ModelConnectionError,
    ServerError,
)
from agentguild.llm.base import ChatChunk, ChatRequest, ChatResponse
from agentguild.llm.resilience import BreakerModel, CircuitBreaker
from agentguild.llm.router import Deployment, Router
from agentguild.llm.scripted import Reply, ScriptedModel
from agentguild.types import Message

REQUEST = ChatRequest([Message.user("route me")])


def model(name: str, replies: Iterable[Reply] = ("ok",), *, cycle: bool = True) -> ScriptedModel:
    return ScriptedModel(list(replies), cycle=cycle, name=name)


def sequence(values: Iterable[float]) -> Callable[[], float]:
    """A `random` function returning `values` in turn, forever."""
    return itertools.cycle(values).__next__


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Timed:
    """Answers after `seconds` of fake time (it advances the shared clock)."""

    def __init__(self, name: str, seconds: float, clock: FakeClock) -> None:
        self._name, self.seconds, self.clock = name, seconds, clock
        self.calls = 0

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        self.clock.now += self.seconds
        return ChatResponse(Message.assistant(self._name))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(text=(await self.complete(request)).message.text)


class Gate:
    """A model whose calls wait until `release` is set."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.entered.set()
        await self.release.wait()
        return ChatResponse(Message.assistant(self._name))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(text=(await self.complete(request)).message.text)


def open_breaker(name: str) -> CircuitBreaker:
    breaker = CircuitBreaker(name=name, min_requests=1, cooldown_s=3600)
    breaker.record(breaker.acquire(), ServerError("down"))
    assert breaker.state == "open"
    return breaker


async def drain(chunks: AsyncIterator[ChatChunk], into: list[ChatChunk]) -> None:
    """Read a stream to its end (or its error), keeping what arrived."""
    async for chunk in chunks:
        into.append(chunk)


async def answers(router: Router, count: int) -> list[str]:
    return [(await router.complete(REQUEST)).message.text for _ in range(count)]


def named(text: str) -> ScriptedModel:
    return model(text, [text])


# ---- strategies --------------------------------------------------------------------------


async def test_weighted_strategy_splits_calls_in_proportion_to_weight() -> None:
    # Given weights 3:1 and evenly spread random draws
    router = Router(
        [Deployment(named("big"), weight=3), Deployment(named("small"), weight=1)],
        random=sequence([i / 8 + 1 / 16 for i in range(8)]),
    )
    # When 8 calls are routed, then 3/4 go to the heavier deployment
    assert Counter(await answers(router, 8)) == {"big": 6, "small": 2}


async def test_round_robin_cycles_through_deployments_and_skips_open_circuits() -> None:
    router = Router(
        [
            Deployment(named("a")),
            Deployment(named("b"), breaker=open_breaker("b")),
            Deployment(named("c")),
        ],
        strategy="round_robin",
    )
    assert await answers(router, 4) == ["a", "c", "a", "c"]


async def test_least_in_flight_prefers_the_idle_deployment() -> None:
    # Given deployment a busy with one call in progress
    busy = Gate("a")
    router = Router(
        [Deployment(busy), Deployment(named("b"))],
        strategy="least_in_flight",
        random=lambda: 0.0,
    )
    pending = asyncio.create_task(router.complete(REQUEST))
    await busy.entered.wait()
    # When another call arrives, then it goes to the idle deployment b
    assert await answers(router, 2) == ["b", "b"]
    busy.release.set()
    assert (await pending).message.text == "a"
    assert [s.in_flight for s in router.stats()] == [0, 0]


async def test_lowest_latency_measures_each_deployment_then_prefers_the_fastest() -> None:
    clock = FakeClock()
    slow, fast = Timed("slow", 2.0, clock), Timed("fast", 0.5, clock)
    router = Router(
        [Deployment(slow), Deployment(fast)],
        strategy="lowest_latency",
        clock=clock,
        random=lambda: 0.0,
    )
    # Unmeasured deployments are tried first, then the fastest wins
    assert await answers(router, 5) == ["slow", "fast", "fast", "fast", "fast"]
    latencies = {s.name: s.latency_ewma_s for s in router.stats()}
    assert latencies == {"slow": 2.0, "fast": 0.5}


async def test_lowest_latency_updates_an_ewma() -> None:
    clock = FakeClock()
    timed = Timed("only", 1.0, clock)
    router = Router([Deployment(timed)], strategy="lowest_latency", clock=clock, latency_alpha=0.5)
    await router.complete(REQUEST)
    timed.seconds = 3.0
    await router.complete(REQUEST)
    assert router.stats()[0].latency_ewma_s == pytest.approx(2.0)


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one deployment"):
        Router([])
    with pytest.raises(ConfigError, match="unknown strategy"):
        Router([Deployment(named("a"))], strategy="fastest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="weights"):
        Router([Deployment(named("a"), weight=0)])


# ---- failover and fallbacks ---------------------------------------------------------------


async def test_a_failing_deployment_fails_over_to_a_healthy_one() -> None:
    broken = model("broken", [ServerError("500")])
    router = Router([Deployment(broken), Deployment(named("good"))], strategy="round_robin")
    assert await answers(router, 1) == ["good"]
    assert [(s.name, s.calls, s.failures) for s in router.stats()] == [
        ("broken", 1, 1),
        ("good", 1, 0),
    ]


async def test_failover_is_bounded_by_max_deployment_attempts() -> None:
    deployments = [Deployment(model(f"d{i}", [ServerError(f"d{i}")])) for i in range(3)]
    router = Router(deployments, strategy="round_robin", max_deployment_attempts=2)
    with pytest.raises(ServerError, match="d1"):
        await router.complete(REQUEST)
    assert [s.calls for s in router.stats()] == [1, 1, 0]


async def test_fallbacks_answer_in_order_when_every_deployment_fails() -> None:
    first_fallback = model("fallback-1", [ModelConnectionError("also down")])
    router = Router(
        [Deployment(model("a", [ServerError("a")])), Deployment(model("b", [ServerError("b")]))],
        fallbacks=[first_fallback, named("fallback-2")],
    )
    assert await answers(router, 1) == ["fallback-2"]
    assert len(first_fallback.requests) == 1


async def test_the_last_error_is_raised_when_fallbacks_fail_too() -> None:
    router = Router(
        [Deployment(model("a", [ServerError("a")]))],
        fallbacks=[model("f", [ModelConnectionError("f is down")])],
    )
    with pytest.raises(ModelConnectionError, match="f is down"):
        await router.complete(REQUEST)


async def test_context_length_errors_go_to_context_fallbacks_only() -> None:
    # Given a primary whose context is too small, an ordinary fallback, and a long-context one
    other_deployment = named("other-deployment")
    ordinary = named("ordinary-fallback")
    router = Router(
        [
            Deployment(model("short", [ContextLengthError("too long")])),
            Deployment(other_deployment),
        ],
        strategy="round_robin",
        fallbacks=[ordinary],
        context_fallbacks=[named("long-context")],
    )
    # When the call overflows the context, then only the long-context model is asked
    assert await answers(router, 1) == ["long-context"]
    assert other_deployment.requests == []
    assert ordinary.requests == []


async def test_context_length_error_without_context_fallbacks_is_raised() -> None:
    ordinary = named("ordinary-fallback")
    router = Router(
        [Deployment(model("short", [ContextLengthError("too long")]))], fallbacks=[ordinary]
    )
    with pytest.raises(ContextLengthError):
        await router.complete(REQUEST)
    assert ordinary.requests == []


async def test_a_fallback_overflowing_its_context_moves_to_context_fallbacks() -> None:
    router = Router(
        [Deployment(model("a", [ServerError("down")]))],
        fallbacks=[model("small", [ContextLengthError("too long")])],
        context_fallbacks=[named("long")],
    )
    assert await answers(router, 1) == ["long"]


async def test_bad_requests_are_raised_without_failover() -> None:
    other = named("other")
    router = Router(
        [Deployment(model("a", [BadRequestError("invalid tool schema")])), Deployment(other)],
        strategy="round_robin",
        fallbacks=[named("fallback")],
    )
    with pytest.raises(BadRequestError, match="invalid tool schema"):
        await router.complete(REQUEST)
    assert other.requests == []


async def test_an_auth_failure_on_one_deployment_fails_over() -> None:
    router = Router(
        [Deployment(model("a", [AuthenticationError("bad key")])), Deployment(named("b"))],
        strategy="round_robin",
    )
    assert await answers(router, 1) == ["b"]


# ---- circuits ----------------------------------------------------------------------------------


async def test_every_circuit_open_and_no_fallback_raises_circuit_open() -> None:
    unused = named("a")
    router = Router([Deployment(unused, breaker=open_breaker("a"))], name="gpt")
    with pytest.raises(CircuitOpenError, match="'gpt'"):
        await router.complete(REQUEST)
    assert unused.requests == []


async def test_open_circuits_send_calls_to_fallbacks() -> None:
    router = Router(
        [Deployment(named("a"), breaker=open_breaker("a"))], fallbacks=[named("fallback")]
    )
    assert await answers(router, 1) == ["fallback"]


async def test_router_failures_open_the_deployment_breaker_which_is_then_skipped() -> None:
    breaker = CircuitBreaker(name="flaky", min_requests=2, failure_rate=1.0, cooldown_s=60)
    flaky = model("flaky", [ServerError("500")])
    router = Router(
        [Deployment(flaky, breaker=breaker), Deployment(named("steady"))],
        strategy="round_robin",
    )
    await answers(router, 4)
    assert breaker.state == "open"
    calls_when_opened = len(flaky.requests)
    assert await answers(router, 3) == ["steady"] * 3
    assert len(flaky.requests) == calls_when_opened
    assert router.stats()[0].breaker_state == "open"


async def test_an_inner_breaker_model_refusing_makes_the_router_move_on() -> None:
    inner = BreakerModel(named("a"), open_breaker("a"))
    router = Router([Deployment(inner), Deployment(named("b"))], strategy="round_robin")
    assert await answers(router, 2) == ["b", "b"]


# ---- streams -------------------------------------------------------------------------------------


class StreamThenFail:
    def __init__(self, name: str, chunks: int) -> None:
        self._name, self.chunks = name, chunks

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        for index in range(self.chunks):
            yield ChatChunk(text=f"{self._name}{index} ")
        raise ModelConnectionError("stream cut")


async def test_stream_fails_over_before_the_first_chunk() -> None:
    router = Router(
        [Deployment(StreamThenFail("dead", 0)), Deployment(named("alive words"))],
        strategy="round_robin",
    )
    text = "".join([chunk.text async for chunk in router.stream(REQUEST)])
    assert text == "alive words"


async def test_stream_does_not_fail_over_after_the_first_chunk() -> None:
    other = named("other")
    router = Router(
        [Deployment(StreamThenFail("half", 2)), Deployment(other)],
        strategy="round_robin",
        fallbacks=[named("fallback")],
    )
    received: list[ChatChunk] = []
    with pytest.raises(ModelConnectionError):
        await drain(router.stream(REQUEST), received)
    assert [chunk.text for chunk in received] == ["half0 ", "half1 "]
    assert other.requests == []
    assert router.stats()[0].in_flight == 0


async def test_stream_latency_is_time_to_first_chunk() -> None:
    clock = FakeClock()
    router = Router([Deployment(Timed("t", 0.25, clock))], strategy="lowest_latency", clock=clock)
    assert [c.text async for c in router.stream(REQUEST)] == ["t"]
    assert router.stats()[0].latency_ewma_s == 0.25
