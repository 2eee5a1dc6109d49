"""Requests- and tokens-per-minute limits per (tenant, caller, model), as a `ChatModel` wrapper.

Limits are enforced with GCRA (the generic cell rate algorithm: a token bucket stored as
one "theoretical arrival time" per bucket), so there are no fixed windows whose shared
counters trip early, and a check-and-reserve of both budgets is one atomic step: in
process (`InMemoryLimiter`) or in one Redis Lua script (`RedisLimiter`).

A call reserves one request and its estimated tokens before it starts and reconciles the
tokens with the usage the provider reports when it ends.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias
from urllib.parse import quote

from ..errors import RateLimitExceeded
from ..types import Usage
from ._breaker import closing_stream
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

DEFAULT_COMPLETION_TOKENS = 256
"""Completion tokens reserved for a request that does not set `max_tokens`."""

DEFAULT_PREFIX = "agentguild:rl"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Requests and tokens per minute, each with a burst (None: that budget is unlimited).

    A budget refills continuously at its per-minute rate up to its burst, so in any span
    of `t` seconds at most `burst + rate * t / 60` are admitted. The burst defaults to
    the per-minute rate (a full minute's allowance may be used at once).
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    burst_requests: int | None = None
    burst_tokens: int | None = None

    def __post_init__(self) -> None:
        for label in ("requests_per_minute", "tokens_per_minute", "burst_requests", "burst_tokens"):
            value = getattr(self, label)
            if value is not None and value < 1:
                raise ValueError(f"RateLimit.{label} must be at least 1 (or None), got {value}")

    @property
    def request_burst(self) -> int | None:
        """The most requests admitted at once (None: unlimited)."""
        if self.requests_per_minute is None:
            return None
        return self.burst_requests or self.requests_per_minute

    @property
    def token_burst(self) -> int | None:
        """The most tokens admitted at once (None: unlimited)."""
        if self.tokens_per_minute is None:
            return None
        return self.burst_tokens or self.tokens_per_minute

    @property
    def unlimited(self) -> bool:
        """Whether neither budget is limited."""
        return self.requests_per_minute is None and self.tokens_per_minute is None

    def describe(self) -> str:
        """A short human description, e.g. '60 requests/min (burst 10), 10000 tokens/min'."""
        parts = []
        for unit, rate, burst in (
            ("requests", self.requests_per_minute, self.request_burst),
            ("tokens", self.tokens_per_minute, self.token_burst),
        ):
            if rate is not None:
                parts.append(f"{rate} {unit}/min" + (f" (burst {burst})" if burst != rate else ""))
        return ", ".join(parts) or "unlimited"


@dataclass(frozen=True, slots=True)
class Decision:
    """A limiter's answer to `acquire`."""

    allowed: bool
    """True: the request and tokens are reserved (for `wait_s` from now)."""
    wait_s: float
    """If allowed, how long to wait before making the call (the reservation starts then);
    if not, how long until it could be admitted (`math.inf`: never, it exceeds a burst)."""


class RateLimiter(Protocol):
    """Checks and reserves request/token budgets per key (see `limit_key`)."""

    async def acquire(
        self, key: str, limit: RateLimit, *, tokens: int = 0, max_wait_s: float = 0.0
    ) -> Decision:
        """Atomically check and reserve one request and `tokens` tokens under `key`.

        Admitted if both budgets allow it now or within `max_wait_s`; if not, nothing is
        reserved.
        """
        ...

    async def adjust(
        self, key: str, limit: RateLimit, *, requests: int = 0, tokens: int = 0
    ) -> None:
        """Charge (positive) or refund (negative) requests/tokens after the fact, unchecked.

        A charge beyond the budget is a debt that delays later calls; a refund never
        raises a budget above its burst.
        """
        ...


LimitResolver: TypeAlias = Callable[[ChatRequest], "RateLimit | None"]
"""The limit for a request (e.g. by tenant or caller); None means no limit."""


def limit_key(
    tenant_id: str, caller_id: str | None, model: str, *, prefix: str = DEFAULT_PREFIX
) -> str:
    """The limiter key of a (tenant, caller, model): `{prefix:tenant:caller:model}`.

    The braces make the whole key a Redis Cluster hash tag, so a limit's request and
    token buckets (`<key>:req`, `<key>:tok`) share a slot. Parts are percent-encoded, so a
    ':' or '}' in a name cannot collide with another key or break the tag.
    """
    parts = (tenant_id, caller_id or "-", model)
    return "{" + prefix + ":" + ":".join(quote(part, safe="") for part in parts) + "}"


def estimate_tokens(
    request: ChatRequest, *, default_completion_tokens: int = DEFAULT_COMPLETION_TOKENS
) -> int:
    """A cheap upper-ish token estimate: prompt characters / 4 plus the completion budget.

    The prompt counts message text, tool-call arguments and tool schemas; the completion
    is `max_tokens`, or `default_completion_tokens` when the request sets none.
    """
    chars = 0
    for message in request.messages:
        chars += len(message.text) + 8
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments)
    for spec in request.tools:
        chars += len(spec.name) + len(spec.description) + len(repr(spec.parameters))
    completion = request.max_tokens if request.max_tokens is not None else default_completion_tokens
    return math.ceil(chars / 4) + completion


# ---- in-process limiter ------------------------------------------------------------------


class InMemoryLimiter:
    """A `RateLimiter` kept in this process (one GCRA arrival time per bucket).

    Each `acquire` runs without awaiting, so concurrent tasks cannot interleave inside a
    check; a lock makes it safe across threads too. Time is kept in integer nanoseconds,
    so a burst is exactly a burst (no float drift). Buckets that have refilled are swept
    away, so memory follows the number of recently active keys.
    """

    _SWEEP_EVERY = 4096

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, int] = {}
        self._floors: dict[str, int] = {}
        """Per bucket: where the latest reservation scheduled in the future ends. A refund
        never moves the TAT back past it, or that slot could be handed out twice."""
        self._lock = threading.Lock()
        self._operations = 0

    def __len__(self) -> int:
        return len(self._tats)

    async def acquire(
        self, key: str, limit: RateLimit, *, tokens: int = 0, max_wait_s: float = 0.0
    ) -> Decision:
        """Atomically check and reserve one request and `tokens` tokens (see `RateLimiter`)."""
        return self.acquire_now(key, limit, tokens=tokens, max_wait_s=max_wait_s)

    async def adjust(
        self, key: str, limit: RateLimit, *, requests: int = 0, tokens: int = 0
    ) -> None:
        """Charge or refund after the fact (see `RateLimiter.adjust`)."""
        self.adjust_now(key, limit, requests=requests, tokens=tokens)

    def acquire_now(
        self, key: str, limit: RateLimit, *, tokens: int = 0, max_wait_s: float = 0.0
    ) -> Decision:
        """`acquire`, synchronously."""
        with self._lock:
            now = round(self._clock() * _NS)
            self._maybe_sweep(now)
            buckets = _buckets(key, limit, requests=1, tokens=tokens)
            wait = 0
            for bucket_key, cost, burst, interval in buckets:
                if cost > burst:
                    return Decision(False, math.inf)
                tat = max(self._tats.get(bucket_key, now), now)
                wait = max(wait, tat + (cost - burst) * interval - now)
            if wait > round(max_wait_s * _NS):
                return Decision(False, wait / _NS)
            start = now + wait
            for bucket_key, cost, _, interval in buckets:
                tat = max(self._tats.get(bucket_key, now), start) + cost * interval
                self._tats[bucket_key] = tat
                if wait > 0:
                    self._floors[bucket_key] = tat
            return Decision(True, wait / _NS)

    def adjust_now(self, key: str, limit: RateLimit, *, requests: int = 0, tokens: int = 0) -> None:
        """`adjust`, synchronously."""
        with self._lock:
            now = round(self._clock() * _NS)
            buckets = _buckets(key, limit, requests=requests, tokens=tokens)
            for bucket_key, delta, _, interval in buckets:
                tat = self._tats.get(bucket_key, now)
                if delta > 0:
                    tat = max(tat, now) + delta * interval
                else:
                    tat = max(tat + delta * interval, now, self._floors.get(bucket_key, now))
                if tat > now:
                    self._tats[bucket_key] = tat
                else:
                    self._tats.pop(bucket_key, None)
                    self._floors.pop(bucket_key, None)

    def _maybe_sweep(self, now: int) -> None:
        self._operations += 1
        if self._operations % self._SWEEP_EVERY:
            return
        for bucket_key in [k for k, tat in self._tats.items() if tat <= now]:
            del self._tats[bucket_key]
            self._floors.pop(bucket_key, None)


_NS = 1_000_000_000


def emission_interval(per_minute: int, units_per_second: int) -> int:
    """Time between two units of a per-minute budget, in `1/units_per_second` seconds.

    Rounded up: exact integers keep bursts exact, and rounding up errs on the strict side
    (the rate is lower by under one part in `60 * units_per_second / per_minute`), so no
    window ever admits more than its limit.
    """
    return -(-60 * units_per_second // per_minute)


def _buckets(
    key: str, limit: RateLimit, *, requests: int, tokens: int
) -> list[tuple[str, int, int, int]]:
    """(bucket key, cost, burst, ns per unit) of each limited budget with a nonzero cost."""
    out = []
    if limit.requests_per_minute is not None and requests:
        interval = emission_interval(limit.requests_per_minute, _NS)
        out.append((key + ":req", requests, limit.request_burst or 0, interval))
    if limit.tokens_per_minute is not None and tokens:
        interval = emission_interval(limit.tokens_per_minute, _NS)
        out.append((key + ":tok", tokens, limit.token_burst or 0, interval))
    return out


# ---- the wrapper -----------------------------------------------------------------------------


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
