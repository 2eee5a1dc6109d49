"""Resilience wrappers: retries, circuit breakers and timeouts, each a `ChatModel`.

Compose them around any model; a typical deployment inside a `Router` is
`RetryingModel(BreakerModel(TimeoutModel(OpenAICompatModel(...), total_s=60)))`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..errors import ModelTimeoutError
from ._breaker import (
    BreakerModel,
    BreakerPermit,
    BreakerState,
    CircuitBreaker,
    RollingCounts,
    TransitionCallback,
    closing_stream,
    is_provider_failure,
)
from ._retry import RetryAttempt, RetryBudget, RetryingModel, Sleep
from .base import ChatChunk, ChatModel, ChatRequest, ChatResponse

__all__ = [
    "BreakerModel",
    "BreakerPermit",
    "BreakerState",
    "CircuitBreaker",
    "RetryAttempt",
    "RetryBudget",
    "RetryingModel",
    "RollingCounts",
    "Sleep",
    "TimeoutModel",
    "TransitionCallback",
    "is_provider_failure",
]


class TimeoutModel:
    """A `ChatModel` that bounds how long `inner` may take, whatever its transport.

    `total_s` bounds a whole call (a complete answer, or a stream from start to end);
    for streams, `first_chunk_s` bounds the wait for the first chunk and `idle_s` the
    silence between two chunks. Time the caller spends between reading chunks counts only
    towards `total_s`. A limit that is hit raises `ModelTimeoutError` (retryable). Connect
    and socket-read timeouts belong to the HTTP client (`OpenAICompatModel`'s
    `connect_timeout` and `timeout`).
    """

    def __init__(
        self,
        inner: ChatModel,
        *,
        total_s: float | None = None,
        first_chunk_s: float | None = None,
        idle_s: float | None = None,
        name: str | None = None,
    ) -> None:
        for label, value in (("total_s", total_s), ("first_chunk_s", first_chunk_s)):
            if value is not None and value <= 0:
                raise ValueError(f"{label} must be positive, got {value}")
        if idle_s is not None and idle_s <= 0:
            raise ValueError(f"idle_s must be positive, got {idle_s}")
        self.inner = inner
        self.total_s = total_s
        self.first_chunk_s = first_chunk_s
        self.idle_s = idle_s
        self._name = name or inner.name

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer via `inner` within `total_s`."""
        try:
            async with asyncio.timeout(self.total_s):
                return await self.inner.complete(request)
        except TimeoutError as exc:
            raise ModelTimeoutError(
                f"{self._name}: no answer within {self.total_s:g}s (TimeoutModel.total_s)"
            ) from exc

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream via `inner` within the first-chunk, idle and total limits."""
        loop = asyncio.get_running_loop()
        deadline = None if self.total_s is None else loop.time() + self.total_s
        async with closing_stream(self.inner.stream(request)) as chunks:
            iterator = aiter(chunks)
            first = True
            while True:
                gap = self.first_chunk_s if first else self.idle_s
                limit, what = _earliest(loop.time(), gap, deadline, first)
                try:
                    async with asyncio.timeout_at(limit):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise ModelTimeoutError(f"{self._name}: {what}") from exc
                first = False
                yield chunk


def _earliest(
    now: float, gap: float | None, deadline: float | None, first: bool
) -> tuple[float | None, str]:
    """The loop time the next chunk must arrive by, and what to say if it does not."""
    gap_at = None if gap is None else now + gap
    if gap_at is not None and (deadline is None or gap_at < deadline):
        if first:
            return gap_at, f"no first chunk within {gap:g}s (TimeoutModel.first_chunk_s)"
        return gap_at, f"stream stalled for {gap:g}s (TimeoutModel.idle_s)"
    return deadline, "stream did not finish within its total time (TimeoutModel.total_s)"
