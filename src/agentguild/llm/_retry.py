"""Retries with exponential backoff and full jitter, Retry-After, and a retry budget."""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ..errors import CircuitOpenError, ModelError, RateLimitError, RateLimitExceeded
from ._breaker import RollingCounts, closing_stream
from .base import ChatChunk, ChatModel, ChatRequest, ChatResponse

logger = logging.getLogger("agentguild.llm.retry")

Sleep = Callable[[float], Awaitable[object]]
"""An `asyncio.sleep`-like function (injectable so tests never really wait)."""


class RetryBudget:
    """Caps retries at `ratio` of requests plus `min_retries`, over a rolling window.

    Retrying every failure multiplies load exactly when a provider is struggling; a budget
    lets isolated failures be retried while a wide outage fails fast. Within any
    `window_s`, at most `min_retries + ratio * requests` retries are allowed. Share one
    budget between wrappers to bound their retries together.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_retries: int = 10,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or min_retries < 0:
            raise ValueError(f"ratio and min_retries must not be negative: {ratio}, {min_retries}")
        self.ratio = ratio
        self.min_retries = min_retries
        self._clock = clock
        self._counts = RollingCounts(window_s)

    @classmethod
    def unlimited(cls) -> RetryBudget:
        """A budget that never refuses (retries are then bounded by attempts only)."""
        return cls(ratio=0.0, min_retries=2**62)

    def record_request(self) -> None:
        """Count one original request (not a retry)."""
        self._counts.add(self._clock(), total=1)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) if it is spent."""
        now = self._clock()
        requests, retries = self._counts.sums(now)
        if retries + 1 > self.min_retries + self.ratio * requests:
            return False
        self._counts.add(now, marked=1)
        return True


@dataclass(frozen=True, slots=True)
class RetryAttempt:
    """A failed attempt that is about to be retried (for `on_retry` observers)."""

    model: str
    attempt: int
    """The attempt that failed: 1 for the first call."""
    error: ModelError
    delay_s: float
    """How long the wrapper waits before the next attempt."""


class RetryingModel:
    """A `ChatModel` that retries `inner`'s transient failures.

    Retried: errors whose `retryable` is true (429, 408 and timeouts, 5xx, connection
    errors, malformed answers), except `CircuitOpenError`, which exists to fail fast, and a
    `RateLimitExceeded` without `retry_after` (a request too large to ever fit).
    Other 4xx errors are raised at once. Attempt n+1 waits `uniform(0, min(max_delay_s,
    base_delay_s * 2**(n-1)))` (full jitter), or at least the provider's Retry-After; a
    Retry-After beyond `max_retry_after_s` fails fast with the original error. Each retry
    is taken from `budget` (default: a private `RetryBudget()`); when it is spent the
    original error is raised.

    A stream is retried only if it failed before its first chunk reached the caller; once
    text has been delivered, replaying it would duplicate output.
    """

    def __init__(
        self,
        inner: ChatModel,
        *,
        max_attempts: int = 3,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        budget: RetryBudget | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        on_retry: Callable[[RetryAttempt], None] | None = None,
        name: str | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if base_delay_s < 0 or max_delay_s < 0 or max_retry_after_s < 0:
            raise ValueError("retry delays must not be negative")
        self.inner = inner
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_retry_after_s = max_retry_after_s
        self.budget = budget if budget is not None else RetryBudget()
        self._sleep = sleep
        self._random = random
        self._on_retry = on_retry
        self._name = name or inner.name

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer via `inner`, retrying transient failures."""
        self.budget.record_request()
        attempt = 1
        while True:
            try:
                return await self.inner.complete(request)
            except ModelError as error:
                delay = self._delay_before_retry(error, attempt)
                if delay is None:
                    raise
            await self._sleep(delay)
            attempt += 1

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream via `inner`, retrying failures that happen before the first chunk."""
        self.budget.record_request()
        attempt = 1
        while True:
            delivered = False
            try:
                async with closing_stream(self.inner.stream(request)) as chunks:
                    async for chunk in chunks:
                        delivered = True
                        yield chunk
                return
            except ModelError as error:
                delay = None if delivered else self._delay_before_retry(error, attempt)
                if delay is None:
                    raise
            await self._sleep(delay)
            attempt += 1

    def backoff(self, attempt: int) -> float:
        """The full-jitter delay after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        return float(self._random() * ceiling)

    def _delay_before_retry(self, error: ModelError, attempt: int) -> float | None:
        """Seconds to wait before retrying after `error`, or None to give up."""
        if not error.retryable or isinstance(error, CircuitOpenError):
            return None
        if isinstance(error, RateLimitExceeded) and error.retry_after is None:
            return None  # our own limiter: this request can never fit
        if attempt >= self.max_attempts:
            return None
        delay = self.backoff(attempt)
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        if retry_after is not None:
            if retry_after > self.max_retry_after_s:
                logger.info(
                    "llm.retry.retry_after_too_long",
                    extra={"model": self._name, "retry_after_s": retry_after},
                )
                return None
            delay = max(delay, retry_after)
        if not self.budget.try_spend():
            logger.warning("llm.retry.budget_exhausted", extra={"model": self._name})
            return None
        logger.info(
            "llm.retry",
            extra={
                "model": self._name,
                "attempt": attempt,
                "error_type": type(error).__name__,
                "delay_s": round(delay, 3),
            },
        )
        if self._on_retry is not None:
            self._on_retry(RetryAttempt(self._name, attempt, error, delay))
        return delay
