"""Circuit breaker: stop sending calls to a deployment that keeps failing, then probe it."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypeAlias

from ..errors import CircuitOpenError, ModelError, RateLimitExceeded
from .base import ChatChunk, ChatModel, ChatRequest, ChatResponse

logger = logging.getLogger("agentguild.llm.breaker")

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]
"""closed: calls flow; open: calls are refused; half_open: one probe call is let through."""

TransitionCallback: TypeAlias = Callable[[str, BreakerState, BreakerState], None]
"""Called as `callback(breaker_name, old_state, new_state)` on every state change."""


def is_provider_failure(error: BaseException) -> bool:
    """Whether `error` says the provider is unhealthy (and so counts against its breaker).

    Retryable model errors (5xx, 408/timeouts, connection errors, malformed answers, 429s
    from the provider) count; a bad request, a cancelled call, our own rate limiter's
    refusal and an inner breaker's refusal do not.
    """
    return (
        isinstance(error, ModelError)
        and error.retryable
        and not isinstance(error, RateLimitExceeded | CircuitOpenError)
    )


class closing_stream:
    """`async with closing_stream(model.stream(request)) as chunks:` closes the stream on exit.

    `ChatModel.stream` is typed as an `AsyncIterator`, which has no `aclose`; async
    generators do, and closing them promptly releases their connection.
    """

    __slots__ = ("_chunks",)

    def __init__(self, chunks: AsyncIterator[ChatChunk]) -> None:
        self._chunks = chunks

    async def __aenter__(self) -> AsyncIterator[ChatChunk]:
        return self._chunks

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()


class RollingCounts:
    """Two counts, `total` and `marked`, over a rolling time window kept in `slots` buckets.

    Old buckets expire as time moves on, so the counts cover the last `window_s` seconds
    (to within one bucket's width). Used for breaker failure rates and retry budgets.
    """

    __slots__ = ("_epochs", "_marked", "_totals", "_width")

    def __init__(self, window_s: float, slots: int = 10) -> None:
        if window_s <= 0 or slots < 1:
            raise ValueError(f"need window_s > 0 and slots >= 1, got {window_s}, {slots}")
        self._width = window_s / slots
        self._epochs = [-1] * slots
        self._totals = [0] * slots
        self._marked = [0] * slots

    def add(self, now: float, *, total: int = 0, marked: int = 0) -> None:
        """Count `total` and `marked` events at time `now`."""
        epoch = math.floor(now / self._width)
        index = epoch % len(self._epochs)
        if self._epochs[index] != epoch:
            self._epochs[index] = epoch
            self._totals[index] = 0
            self._marked[index] = 0
        self._totals[index] += total
        self._marked[index] += marked

    def sums(self, now: float) -> tuple[int, int]:
        """(total, marked) over the window ending at `now`."""
        oldest = math.floor(now / self._width) - len(self._epochs)
        total = marked = 0
        for index, epoch in enumerate(self._epochs):
            if epoch > oldest:
                total += self._totals[index]
                marked += self._marked[index]
        return total, marked

    def clear(self) -> None:
        """Forget every count."""
        for index in range(len(self._epochs)):
            self._epochs[index] = -1
            self._totals[index] = self._marked[index] = 0


@dataclass(frozen=True, slots=True)
class BreakerPermit:
    """Leave to make one call, from `CircuitBreaker.acquire`; report its outcome with it."""

    generation: int
    """The breaker's generation when the permit was issued: outcomes of calls started
    before the last state change are ignored, so a slow stale failure cannot reopen it."""
    probe: bool
    """True for the single half-open probe call."""


class CircuitBreaker:
    """Per-deployment circuit breaker with a half-open probe.

    Closed: calls flow, and outcomes are counted over a rolling `window_s`. When at least
    `min_requests` calls finished in the window and the share of provider failures (see
    `is_provider_failure`) reaches `failure_rate`, the breaker opens: calls are refused with
    `CircuitOpenError` for `cooldown_s`. Then it is half-open: exactly one probe call goes
    through (concurrent callers are refused at once); its success closes the breaker, its
    failure opens it for another cooldown. A probe that ends without a verdict (cancelled,
    bad request) frees the probe slot for the next caller.

    `clock` (monotonic seconds) is injectable for tests; `on_transition` observes state
    changes (metrics, logs).
    """

    def __init__(
        self,
        *,
        failure_rate: float = 0.5,
        min_requests: int = 10,
        window_s: float = 30.0,
        cooldown_s: float = 30.0,
        name: str = "breaker",
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionCallback | None = None,
        is_failure: Callable[[BaseException], bool] = is_provider_failure,
    ) -> None:
        if not 0 < failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], got {failure_rate}")
        if min_requests < 1:
            raise ValueError(f"min_requests must be at least 1, got {min_requests}")
        if cooldown_s < 0:
            raise ValueError(f"cooldown_s must not be negative, got {cooldown_s}")
        self.name = name
        self.failure_rate = failure_rate
        self.min_requests = min_requests
        self.cooldown_s = cooldown_s
        self.is_failure = is_failure
        self._clock = clock
        self._on_transition = on_transition
        self._counts = RollingCounts(window_s)
        self._state: BreakerState = "closed"
        self._generation = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self.state!r})"

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose cooldown has passed reads half_open)."""
        self._refresh()
        return self._state

    def allows_request(self) -> bool:
        """Whether `acquire` would grant a permit right now (without taking one)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probe_in_flight)

    def retry_in(self) -> float:
        """Seconds until the breaker lets a call through (0 if it does now)."""
        if self.allows_request():
            return 0.0
        if self._state == "open":
            return max(0.0, self._opened_at + self.cooldown_s - self._clock())
        return 0.0

    def acquire(self) -> BreakerPermit:
        """A permit to make one call; raises `CircuitOpenError` if the breaker refuses."""
        state = self.state
        if state == "closed":
            return BreakerPermit(self._generation, probe=False)
        if state == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return BreakerPermit(self._generation, probe=True)
        if state == "half_open":
            reason = "half-open and its one probe call is still in flight"
        else:
            reason = f"open; it lets a probe call through in {self.retry_in():.1f}s"
        raise CircuitOpenError(
            f"circuit breaker {self.name!r} is {reason}; use another deployment or retry later"
        )

    def record(self, permit: BreakerPermit, error: BaseException | None) -> None:
        """Report how the call made under `permit` ended: None for success, else its error."""
        if error is None:
            self.record_success(permit)
        elif self.is_failure(error):
            self.record_failure(permit)
        else:
            self.release(permit)

    def record_success(self, permit: BreakerPermit) -> None:
        """The call made under `permit` succeeded."""
        if permit.generation != self._generation:
            return
        if permit.probe:
            self._probe_in_flight = False
            self._transition("closed")
        elif self._state == "closed":
            self._counts.add(self._clock(), total=1)

    def record_failure(self, permit: BreakerPermit) -> None:
        """The call made under `permit` failed on the provider's side."""
        if permit.generation != self._generation:
            return
        if permit.probe:
            self._probe_in_flight = False
            self._transition("open")
            return
        if self._state != "closed":
            return
        now = self._clock()
        self._counts.add(now, total=1, marked=1)
        total, failures = self._counts.sums(now)
        if total >= self.min_requests and failures >= self.failure_rate * total:
            self._transition("open")

    def release(self, permit: BreakerPermit) -> None:
        """The call made under `permit` ended without saying anything about the provider."""
        if permit.probe and permit.generation == self._generation:
            self._probe_in_flight = False

    def reset(self) -> None:
        """Close the breaker and forget its counts (an operator's override)."""
        self._probe_in_flight = False
        self._transition("closed")

    def _refresh(self) -> None:
        if self._state == "open" and self._clock() >= self._opened_at + self.cooldown_s:
            self._transition("half_open")

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        self._generation += 1
        self._state = new
        if new == "open":
            self._opened_at = self._clock()
        elif new == "closed":
            self._counts.clear()
        if old == new:
            return
        log = logger.warning if new == "open" else logger.info
        log("llm.breaker.%s", new, extra={"breaker": self.name, "from_state": old})
        if self._on_transition is not None:
            self._on_transition(self.name, old, new)


class BreakerModel:
    """A `ChatModel` that guards `inner` with a `CircuitBreaker`.

    While the breaker is open, calls fail at once with `CircuitOpenError` (retryable, so a
    `Router` moves on to another deployment). A stream's outcome is known when it ends:
    a failure mid-stream counts, a consumer that stops reading early does not.
    """

    def __init__(
        self, inner: ChatModel, breaker: CircuitBreaker | None = None, *, name: str | None = None
    ) -> None:
        self.inner = inner
        self.breaker = breaker if breaker is not None else CircuitBreaker(name=inner.name)
        self._name = name or inner.name

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer via `inner`, unless the breaker refuses the call."""
        permit = self.breaker.acquire()
        try:
            response = await self.inner.complete(request)
        except BaseException as error:
            self.breaker.record(permit, error)
            raise
        self.breaker.record_success(permit)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream via `inner`, unless the breaker refuses the call."""
        permit = self.breaker.acquire()
        try:
            async with closing_stream(self.inner.stream(request)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except BaseException as error:
            self.breaker.record(permit, error)
            raise
        self.breaker.record_success(permit)
