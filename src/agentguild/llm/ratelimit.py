"""Requests- and tokens-per-minute limits per (tenant, caller, model), as a `ChatModel` wrapper.

Limits are enforced with GCRA (the generic cell rate algorithm: a token bucket stored as
one "theoretical arrival time" per bucket), so there are no fixed windows whose shared
counters trip early, and a check-and-reserve of both budgets is one atomic step: in
process (`InMemoryLimiter`) or in one Redis Lua script (`RedisLimiter`).

A call reserves one request and its estimated tokens before it starts and reconciles the
tokens with the usage the provider reports when it ends.

This module is the wrapper and the public names; the limits themselves are in
`_ratelimit_limits`, the in-process limiter in `_ratelimit_memory` and the Redis one in
`_ratelimit_redis`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import RateLimitExceeded
from ..types import Usage
from ._breaker import closing_stream
from ._ratelimit_limits import (
    DEFAULT_COMPLETION_TOKENS,
    DEFAULT_PREFIX,
    Decision,
    LimitResolver,
    RateLimit,
    RateLimiter,
    estimate_tokens,
    limit_key,
)
from ._ratelimit_memory import InMemoryLimiter
from .base import ChatChunk, ChatModel, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from ._ratelimit_redis import RedisLimiter

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "Decision",
    "InMemoryLimiter",
    "LimitResolver",
    "RateLimit",
    "RateLimitedModel",
    "RateLimiter",
    "RedisLimiter",
    "estimate_tokens",
    "limit_key",
]


@dataclass(frozen=True, slots=True)
class _Reservation:
    key: str
    limit: RateLimit
    tokens: int


class RateLimitedModel:
    """A `ChatModel` that admits calls to `inner` within a `RateLimit` per (tenant, caller, model).

    Before a call it reserves one request and `estimate_tokens(request)` tokens under
    `limit_key(request.tenant_id, request.caller_id, model)`. If the budgets allow the
    call within `max_wait_s`, it waits (via `sleep`) and proceeds; otherwise it raises
    `RateLimitExceeded` with `retry_after` (None when the call can never fit, because its
    tokens exceed the token burst). Afterwards the reservation is reconciled with the
    reported usage: the difference is refunded or charged; a call that failed before
    producing output gets its tokens back (the request still counts).

    `limit` is one `RateLimit` for every key, or a function of the request (per-tenant
    limits; None means unlimited).
    """

    def __init__(
        self,
        inner: ChatModel,
        limiter: RateLimiter,
        limit: RateLimit | LimitResolver,
        *,
        max_wait_s: float = 0.0,
        estimate_tokens: Callable[[ChatRequest], int] = estimate_tokens,
        model: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        name: str | None = None,
    ) -> None:
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        self.inner = inner
        self.limiter = limiter
        self.max_wait_s = max_wait_s
        self._limit = limit
        self._estimate = estimate_tokens
        self._model = model or inner.name
        self._prefix = prefix
        self._sleep = sleep
        self._name = name or inner.name

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer via `inner` once the request is admitted."""
        reservation = await self._reserve(request)
        try:
            response = await self.inner.complete(request)
        except BaseException:
            await self._settle(reservation, None, produced=False)
            raise
        await self._settle(reservation, response.usage, produced=True)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream via `inner` once the request is admitted."""
        reservation = await self._reserve(request)
        usage: Usage | None = None
        produced = False
        try:
            async with closing_stream(self.inner.stream(request)) as chunks:
                async for chunk in chunks:
                    produced = True
                    if chunk.usage is not None:
                        usage = chunk.usage
                    yield chunk
        except BaseException:
            await self._settle(reservation, usage, produced=produced)
            raise
        await self._settle(reservation, usage, produced=True)

    def _limit_for(self, request: ChatRequest) -> RateLimit | None:
        limit = self._limit if isinstance(self._limit, RateLimit) else self._limit(request)
        return None if limit is None or limit.unlimited else limit

    async def _reserve(self, request: ChatRequest) -> _Reservation | None:
        limit = self._limit_for(request)
        if limit is None:
            return None
        key = limit_key(request.tenant_id, request.caller_id, self._model, prefix=self._prefix)
        tokens = self._estimate(request) if limit.tokens_per_minute is not None else 0
        decision = await self.limiter.acquire(key, limit, tokens=tokens, max_wait_s=self.max_wait_s)
        if not decision.allowed:
            raise self._exceeded(request, limit, tokens, decision.wait_s)
        reservation = _Reservation(key, limit, tokens)
        if decision.wait_s > 0:
            try:
                await self._sleep(decision.wait_s)
            except BaseException:
                await self.limiter.adjust(key, limit, requests=-1, tokens=-tokens)
                raise
        return reservation

    async def _settle(
        self, reservation: _Reservation | None, usage: Usage | None, *, produced: bool
    ) -> None:
        if reservation is None or not reservation.tokens:
            return
        if not produced:
            delta = -reservation.tokens
        elif usage is not None and usage.total_tokens > 0:
            delta = usage.total_tokens - reservation.tokens
        else:
            return  # no usage reported: the estimate stands
        if delta:
            await self.limiter.adjust(reservation.key, reservation.limit, tokens=delta)

    def _exceeded(
        self, request: ChatRequest, limit: RateLimit, tokens: int, wait: float
    ) -> RateLimitExceeded:
        caller = request.caller_id or "-"
        who = f"tenant {request.tenant_id!r}, caller {caller!r}, model {self._model!r}"
        if math.isinf(wait):
            return RateLimitExceeded(
                f"rate limit for {who} ({limit.describe()}): this request needs ~{tokens} tokens, "
                "more than the token burst admits at once; lower max_tokens or raise the limit",
                retry_after=None,
            )
        return RateLimitExceeded(
            f"rate limit for {who} ({limit.describe()}) exceeded; retry in {wait:.2f}s",
            retry_after=wait,
        )


def __getattr__(name: str) -> object:
    # RedisLimiter lives in its own module so that this one does not need `redis`.
    if name == "RedisLimiter":
        from ._ratelimit_redis import RedisLimiter

        return RedisLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
