"""RetryingModel, RetryBudget, CircuitBreaker/BreakerModel and TimeoutModel, on fake time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agentguild.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ModelConnectionError,
    ModelTimeoutError,
    RateLimitError,
    RateLimitExceeded,
    ServerError,
)
from agentguild.llm.base import ChatChunk, ChatRequest, ChatResponse
from agentguild.llm.resilience import (
    BreakerModel,
    BreakerState,
    CircuitBreaker,
    RetryAttempt,
    RetryBudget,
    RetryingModel,
    TimeoutModel,
)
from agentguild.llm.scripted import Reply, ScriptedModel
from agentguild.types import Message

REQUEST = ChatRequest([Message.user("Hello there")])


class FakeClock:
    """Monotonic time that only moves when told to (or when `sleep` is awaited)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ChunksThenFail:
    """Streams `chunks` text pieces, then fails with `error` (None: ends normally)."""

    def __init__(self, chunks: int, error: Exception | None) -> None:
        self.chunks = chunks
        self.error = error
        self.calls = 0

    @property
    def name(self) -> str:
        return "chunks-then-fail"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        for index in range(self.chunks):
            yield ChatChunk(text=f"part{index} ")
        if self.error is not None:
            raise self.error


class Blocked:
    """A model whose calls wait until the test releases them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    @property
    def name(self) -> str:
        return "blocked"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.started.set()
        await self.release.wait()
        return ChatResponse(Message.assistant("late"))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.started.set()
        await self.release.wait()
        yield ChatChunk(text="late")


def retrying(
    replies: list[Reply], clock: FakeClock, *, jitter: float = 0.5, **options: object
) -> tuple[RetryingModel, ScriptedModel]:
    inner = ScriptedModel(replies)
    model = RetryingModel(
        inner,
        sleep=clock.sleep,
        random=lambda: jitter,
        budget=RetryBudget.unlimited(),
        **options,  # type: ignore[arg-type]
    )
    return model, inner


def texts(chunks: list[ChatChunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


async def drain(chunks: AsyncIterator[ChatChunk], into: list[ChatChunk]) -> None:
    """Read a stream to its end (or its error), keeping what arrived."""
    async for chunk in chunks:
        into.append(chunk)


# ---- retries ------------------------------------------------------------------------------


async def test_transient_failures_are_retried_with_full_jitter_backoff() -> None:
    # Given a model failing twice with retryable errors, then answering
    clock = FakeClock()
    model, inner = retrying([ServerError("boom"), ModelConnectionError("reset"), "ok"], clock)
    # When called
    response = await model.complete(REQUEST)
    # Then it answers after two retries that waited uniform(0, base * 2**n) (random = 0.5)
    assert response.message.text == "ok"
    assert len(inner.requests) == 3
    assert clock.sleeps == [0.25, 0.5]


async def test_backoff_ceiling_is_capped_by_max_delay() -> None:
    clock = FakeClock()
    model, _ = retrying([], clock, jitter=1.0, base_delay_s=1.0, max_delay_s=5.0)
    assert [model.backoff(n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_retry_after_is_honoured_as_the_minimum_wait() -> None:
    # Given a provider asking to wait 7 s, then answering
    clock = FakeClock()
    model, _ = retrying([RateLimitError("slow down", retry_after=7.0), "ok"], clock)
    # When called
    await model.complete(REQUEST)
    # Then the retry waited the Retry-After (more than the jittered backoff)
    assert clock.sleeps == [7.0]


async def test_retry_after_beyond_the_cap_fails_fast_with_the_original_error() -> None:
    clock = FakeClock()
    error = RateLimitError("come back tomorrow", retry_after=3600.0)
    model, inner = retrying([error, "ok"], clock, max_retry_after_s=60.0)
    with pytest.raises(RateLimitError) as raised:
        await model.complete(REQUEST)
    assert raised.value is error
    assert clock.sleeps == []
    assert len(inner.requests) == 1


@pytest.mark.parametrize(
    "error", [BadRequestError("bad", status=400), AuthenticationError("key", status=401)]
)
async def test_other_client_errors_are_not_retried(error: Exception) -> None:
    clock = FakeClock()
    model, inner = retrying([error, "ok"], clock)
    with pytest.raises(type(error)):
        await model.complete(REQUEST)
    assert len(inner.requests) == 1
    assert clock.sleeps == []


async def test_circuit_open_errors_fail_fast() -> None:
    clock = FakeClock()
    model, inner = retrying([CircuitOpenError("open"), "ok"], clock)
    with pytest.raises(CircuitOpenError):
        await model.complete(REQUEST)
    assert len(inner.requests) == 1


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = FakeClock()
    last = ServerError("third")
    model, inner = retrying([ServerError("1"), ServerError("2"), last, "ok"], clock)
    with pytest.raises(ServerError) as raised:
        await model.complete(REQUEST)
    assert raised.value is last
    assert len(inner.requests) == 3
    assert len(clock.sleeps) == 2


async def test_on_retry_observes_every_retry() -> None:
    clock = FakeClock()
    seen: list[RetryAttempt] = []
    model, _ = retrying([ServerError("x"), "ok"], clock, on_retry=seen.append)
    await model.complete(REQUEST)
    assert [(a.attempt, type(a.error), a.delay_s) for a in seen] == [(1, ServerError, 0.25)]


async def test_retry_budget_allows_a_floor_plus_a_share_of_requests() -> None:
    # Given a budget of 1 retry + 50% of requests in the window
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, min_retries=1, window_s=10.0, clock=clock)
    # When 2 requests were made: 1 + 0.5 * 2 = 2 retries are allowed, not 3
    budget.record_request()
    budget.record_request()
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    # Then once the window has passed, the budget is back to its floor
    clock.advance(11.0)
    assert [budget.try_spend() for _ in range(2)] == [True, False]


async def test_a_spent_budget_raises_the_original_error() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_retries=1, clock=clock)
    model = RetryingModel(
        ScriptedModel([ServerError("a"), "ok", ServerError("b"), "ok"]),
        sleep=clock.sleep,
        random=lambda: 0.0,
        budget=budget,
    )
    assert (await model.complete(REQUEST)).message.text == "ok"
    with pytest.raises(ServerError, match="b"):
        await model.complete(REQUEST)


async def test_stream_is_retried_when_it_fails_before_the_first_chunk() -> None:
    clock = FakeClock()
    model, inner = retrying([ServerError("down"), "hello world"], clock)
    chunks = [chunk async for chunk in model.stream(REQUEST)]
    assert texts(chunks) == "hello world"
    assert len(inner.requests) == 2
    assert clock.sleeps == [0.25]


async def test_stream_is_not_retried_once_a_chunk_reached_the_caller() -> None:
    clock = FakeClock()
    inner = ChunksThenFail(2, ModelConnectionError("dropped"))
    model = RetryingModel(inner, sleep=clock.sleep, budget=RetryBudget.unlimited())
    received: list[ChatChunk] = []
    with pytest.raises(ModelConnectionError):
        await drain(model.stream(REQUEST), received)
    assert texts(received) == "part0 part1 "
    assert inner.calls == 1
    assert clock.sleeps == []


# ---- circuit breaker -------------------------------------------------------------------------


def breaker(clock: FakeClock, **options: object) -> tuple[CircuitBreaker, list[BreakerState]]:
    states: list[BreakerState] = []
    settings: dict[str, object] = {
        "failure_rate": 0.5,
        "min_requests": 4,
        "window_s": 10.0,
        "cooldown_s": 30.0,
        **options,
    }
    made = CircuitBreaker(
        name="east",
        clock=clock,
        on_transition=lambda name, old, new: states.append(new),
        **settings,  # type: ignore[arg-type]
    )
    return made, states


def state(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state (via a call, so type checkers do not pin it between asserts)."""
    return breaker.state


def run(breaker: CircuitBreaker, error: BaseException | None) -> None:
    breaker.record(breaker.acquire(), error)


def test_breaker_opens_at_the_failure_rate_once_min_requests_finished() -> None:
    clock = FakeClock()
    cb, states = breaker(clock)
    # Given 3 failures: above the rate but below min_requests, the breaker stays closed
    for _ in range(3):
        run(cb, ServerError("x"))
    assert state(cb) == "closed"
    # When a 4th failure arrives (4 of 4 failed)
    run(cb, ServerError("x"))
    # Then it opens and refuses calls at once
    assert state(cb) == "open"
    assert states == ["open"]
    with pytest.raises(CircuitOpenError, match="east"):
        cb.acquire()


def test_breaker_stays_closed_below_the_failure_rate() -> None:
    cb, _ = breaker(FakeClock())
    for error in [None, None, ServerError("x"), None, None, ServerError("x")]:
        run(cb, error)
    assert state(cb) == "closed"


@pytest.mark.parametrize(
    "error",
    [BadRequestError("bad"), RateLimitExceeded("ours"), CircuitOpenError("inner"), ValueError()],
)
def test_breaker_ignores_errors_that_are_not_provider_failures(error: BaseException) -> None:
    cb, _ = breaker(FakeClock(), min_requests=1)
    for _ in range(5):
        run(cb, error)
    assert state(cb) == "closed"


def test_old_failures_leave_the_rolling_window() -> None:
    clock = FakeClock()
    cb, _ = breaker(clock)
    for _ in range(3):
        run(cb, ServerError("x"))
    clock.advance(11.0)
    run(cb, ServerError("x"))
    assert state(cb) == "closed"


def test_breaker_goes_half_open_after_cooldown_and_a_successful_probe_closes_it() -> None:
    clock = FakeClock()
    cb, states = breaker(clock, min_requests=1)
    run(cb, ServerError("x"))
    assert state(cb) == "open"
    # When the cooldown has passed
    clock.advance(30.0)
    # Then one probe is let through; a concurrent caller is refused meanwhile
    assert state(cb) == "half_open"
    probe = cb.acquire()
    assert probe.probe
    assert not cb.allows_request()
    with pytest.raises(CircuitOpenError, match="probe"):
        cb.acquire()
    # And the probe's success closes the breaker
    cb.record(probe, None)
    assert state(cb) == "closed"
    assert states == ["open", "half_open", "closed"]


def test_a_failed_probe_opens_the_breaker_for_another_cooldown() -> None:
    clock = FakeClock()
    cb, states = breaker(clock, min_requests=1)
    run(cb, ServerError("x"))
    clock.advance(30.0)
    cb.record(cb.acquire(), ModelTimeoutError("still slow"))
    assert state(cb) == "open"
    clock.advance(29.0)
    assert state(cb) == "open"
    assert cb.retry_in() == pytest.approx(1.0)
    clock.advance(1.0)
    assert state(cb) == "half_open"
    assert states == ["open", "half_open", "open", "half_open"]


def test_a_probe_without_verdict_frees_the_probe_slot() -> None:
    clock = FakeClock()
    cb, _ = breaker(clock, min_requests=1)
    run(cb, ServerError("x"))
    clock.advance(30.0)
    cb.record(cb.acquire(), asyncio.CancelledError())
    assert state(cb) == "half_open"
    assert cb.acquire().probe


def test_a_stale_failure_from_before_the_breaker_opened_is_ignored() -> None:
    # Given a slow call started while closed, and a probe that then closed the breaker
    clock = FakeClock()
    cb, _ = breaker(clock, min_requests=1)
    slow = cb.acquire()
    run(cb, ServerError("x"))
    clock.advance(30.0)
    cb.record(cb.acquire(), None)
    assert state(cb) == "closed"
    # When the slow call finally fails
    cb.record(slow, ServerError("late"))
    # Then the breaker stays closed: that failure predates the recovery
    assert state(cb) == "closed"


async def test_breaker_model_refuses_calls_without_touching_the_inner_model() -> None:
    clock = FakeClock()
    cb, _ = breaker(clock, min_requests=2)
    inner = ScriptedModel([ServerError("1"), ServerError("2"), "never"])
    model = BreakerModel(inner, cb)
    for _ in range(2):
        with pytest.raises(ServerError):
            await model.complete(REQUEST)
    with pytest.raises(CircuitOpenError):
        await model.complete(REQUEST)
    assert len(inner.requests) == 2


async def test_breaker_model_counts_mid_stream_failures_but_not_abandoned_streams() -> None:
    clock = FakeClock()
    cb, _ = breaker(clock, min_requests=1)
    # An abandoned stream (the consumer stops early) is no verdict on the provider
    model = BreakerModel(ChunksThenFail(3, None), cb)
    async with asyncio.timeout(5):
        stream = model.stream(REQUEST)
        await anext(aiter(stream))
        await stream.aclose()  # type: ignore[attr-defined]
    assert state(cb) == "closed"
    # A stream that breaks midway is a provider failure
    failing = BreakerModel(ChunksThenFail(1, ModelConnectionError("cut")), cb)
    with pytest.raises(ModelConnectionError):
        await drain(failing.stream(REQUEST), [])
    assert state(cb) == "open"


# ---- timeouts -------------------------------------------------------------------------------


async def test_timeout_model_bounds_a_complete_call() -> None:
    model = TimeoutModel(Blocked(), total_s=0.01)
    with pytest.raises(ModelTimeoutError, match="total_s"):
        await model.complete(REQUEST)


async def test_timeout_model_bounds_the_wait_for_the_first_chunk() -> None:
    model = TimeoutModel(Blocked(), first_chunk_s=0.01, total_s=10)
    with pytest.raises(ModelTimeoutError, match="first chunk"):
        await drain(model.stream(REQUEST), [])


async def test_timeout_model_bounds_silence_between_chunks() -> None:
    class OneThenStall(Blocked):
        async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
            yield ChatChunk(text="first")
            await self.release.wait()

    received: list[ChatChunk] = []
    model = TimeoutModel(OneThenStall(), idle_s=0.01)
    with pytest.raises(ModelTimeoutError, match="stalled"):
        await drain(model.stream(REQUEST), received)
    assert texts(received) == "first"


async def test_timeout_model_passes_prompt_answers_through() -> None:
    model = TimeoutModel(ScriptedModel(["quick answer", "again"]), total_s=5, idle_s=5)
    assert (await model.complete(REQUEST)).message.text == "quick answer"
    assert texts([c async for c in model.stream(REQUEST)]) == "again"


async def test_our_limiter_refusing_a_request_that_can_never_fit_is_not_retried() -> None:
    clock = FakeClock()
    model, inner = retrying([RateLimitExceeded("too big", retry_after=None), "ok"], clock)
    with pytest.raises(RateLimitExceeded):
        await model.complete(REQUEST)
    assert len(inner.requests) == 1
