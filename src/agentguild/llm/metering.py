"""Metering: token usage and cost of every model call, as records for sinks to aggregate.

```python
usage = UsageAggregator()
model = MeteredModel(inner, prices={"openai:gpt-4o-mini": Price(0.15, 0.60)}, sink=usage)
...
usage.total(tenant_id="acme").cost_usd
```

Recording is in-memory work only (a dataclass and a dict update, or a `put_nowait`), so
metering adds no I/O to the call path; persisting records is a consumer's job
(`QueueSink`). Answers served by a `CachedModel` underneath are recorded with
`cached=True` and cost nothing; what they would have cost is in `saved_usd`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from ..types import Usage
from ._cache_signal import CacheHitProbe, current_probe
from .base import ChatChunk, ChatModel, ChatRequest, ChatResponse

__all__ = [
    "CallbackSink",
    "MeterSink",
    "MeteredModel",
    "Price",
    "QueueSink",
    "UsageAggregator",
    "UsageRecord",
    "UsageTotals",
    "estimate_prompt_tokens",
    "estimate_tokens",
]

logger = logging.getLogger("agentguild.metering")

_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True, slots=True)
class Price:
    """A model's list price in USD per million tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The price of these tokens, in USD."""
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1_000_000


class UsageRecord(NamedTuple):
    """Usage and cost of one model call (immutable; a named tuple because it is built on
    every call and a frozen dataclass costs three times as much to construct)."""

    tenant_id: str
    caller_id: str | None
    model: str
    """The metered model's `name` (the configured model, stable across provider snapshots)."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    """What the call cost upstream: 0 for a cached answer, and when the model has no price."""
    cached: bool
    """Answered by the response cache, without an upstream call of its own."""
    duration_s: float
    at: float
    """When the call ended (Unix time)."""
    estimated: bool = False
    """The provider reported no usage: tokens are estimated from text length."""
    streamed: bool = False
    finished: bool = True
    """False when a stream failed or was closed before its end (tokens are those seen)."""
    saved_usd: float = 0.0
    """For a cached answer, what it would have cost upstream."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class MeterSink(Protocol):
    """Receives every `UsageRecord`; must not block or do I/O (it runs on the call path)."""

    def record(self, record: UsageRecord) -> None:
        """Take one record."""
        ...


@dataclass(slots=True)
class UsageTotals:
    """Usage summed over many calls."""

    calls: int = 0
    cached_calls: int = 0
    estimated_calls: int = 0
    prompt_tokens: int = 0
    """Prompt tokens sent upstream (cached answers excluded)."""
    completion_tokens: int = 0
    """Completion tokens received from upstream (cached answers excluded)."""
    cached_tokens: int = 0
    """Tokens (prompt + completion) of the answers served from the cache."""
    cost_usd: float = 0.0
    saved_usd: float = 0.0

    def add(self, record: UsageRecord) -> None:
        """Count one record in."""
        self.calls += 1
        if record.estimated:
            self.estimated_calls += 1
        if record.cached:
            self.cached_calls += 1
            self.cached_tokens += record.total_tokens
            self.saved_usd += record.saved_usd
        else:
            self.prompt_tokens += record.prompt_tokens
            self.completion_tokens += record.completion_tokens
            self.cost_usd += record.cost_usd

    def merge(self, other: UsageTotals) -> None:
        """Add another total to this one."""
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.estimated_calls += other.estimated_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.cost_usd += other.cost_usd
        self.saved_usd += other.saved_usd

    def copy(self) -> UsageTotals:
        total = UsageTotals()
        total.merge(self)
        return total


class UsageAggregator:
    """A sink keeping running totals per (tenant, model), in memory."""

    def __init__(self) -> None:
        self._totals: dict[tuple[str, str], UsageTotals] = {}

    def record(self, record: UsageRecord) -> None:
        key = (record.tenant_id, record.model)
        total = self._totals.get(key)
        if total is None:
            total = self._totals[key] = UsageTotals()
        total.add(record)

    def totals(self) -> dict[tuple[str, str], UsageTotals]:
        """A copy of the totals, keyed by (tenant_id, model)."""
        return {key: total.copy() for key, total in self._totals.items()}

    def total(self, *, tenant_id: str | None = None, model: str | None = None) -> UsageTotals:
        """The totals of one tenant and/or model (everything when neither is given)."""
        out = UsageTotals()
        for (tenant, name), total in self._totals.items():
            if (tenant_id is None or tenant == tenant_id) and (model is None or name == model):
                out.merge(total)
        return out

    def drain(self) -> dict[tuple[str, str], UsageTotals]:
        """The totals so far, then start again from zero (for periodic flushing)."""
        totals, self._totals = self._totals, {}
        return totals


class CallbackSink:
    """A sink calling `callback(record)` for each record.

    The callback runs on the call path: keep it quick. If it raises, the error is logged
    with its traceback and the model call still succeeds (it already happened upstream).
    """

    def __init__(self, callback: Callable[[UsageRecord], None]) -> None:
        self.callback = callback
        self.errors = 0

    def record(self, record: UsageRecord) -> None:
        try:
            self.callback(record)
        except Exception:  # a faulty consumer must not fail a call that already happened
            self.errors += 1
            logger.exception("metering.callback_failed", extra={"model": record.model})


@dataclass(slots=True)
class QueueSink:
    """A sink handing records to an `asyncio.Queue` for an async consumer (persistence,
    event publishing). When the queue is full, records are dropped and counted."""

    maxsize: int = 10_000
    queue: asyncio.Queue[UsageRecord] = field(init=False)
    dropped: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.maxsize)

    def record(self, record: UsageRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("metering.queue_full", extra={"dropped": self.dropped})


def estimate_tokens(text_chars: int) -> int:
    """A rough token count for text of this many characters (about 4 per token)."""
    return math.ceil(text_chars / _CHARS_PER_TOKEN)


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """A rough token count of a request's messages."""
    chars = 0
    for message in request.messages:
        chars += len(message.text)
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments)
    return estimate_tokens(chars) + _TOKENS_PER_MESSAGE * len(request.messages)


class MeteredModel:
    """A `ChatModel` recording the usage and cost of every call of `inner` to `sink`.

    `prices`: one `Price` for every call, or prices by model name (the inner model's
    `name`, else the model the provider reports), or None (cost 0). Non-streaming calls
    are recorded when they return; streams when they end, from their final usage chunk
    (estimated from the text if there is none), including streams cut short. Failed calls
    are not recorded.
    """

    def __init__(
        self,
        inner: ChatModel,
        *,
        prices: Mapping[str, Price] | Price | None,
        sink: MeterSink,
    ) -> None:
        self.inner = inner
        self.prices = prices
        self.sink = sink
        self._unpriced: set[str] = set()

    @property
    def name(self) -> str:
        return self.inner.name

    def __repr__(self) -> str:
        return f"MeteredModel({self.inner!r})"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        probe = CacheHitProbe()
        started = time.perf_counter()
        token = current_probe.set(probe)
        try:
            response = await self.inner.complete(request)
        finally:
            current_probe.reset(token)
        usage = response.usage
        estimated = not (usage.prompt_tokens or usage.completion_tokens)
        if estimated:
            message = response.message
            text_chars = len(message.text) + sum(
                len(call.name) + len(call.arguments) for call in message.tool_calls
            )
            usage = Usage(estimate_prompt_tokens(request), estimate_tokens(text_chars))
        self._emit(
            request,
            usage,
            response.model,
            cached=probe.hit,
            estimated=estimated,
            started=started,
            streamed=False,
            finished=True,
        )
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        probe = CacheHitProbe()
        started = time.perf_counter()
        chunks = _Probed(self.inner.stream(request), probe)
        usage: Usage | None = None
        text_chars = 0
        reported_model = ""
        seen = finished = False
        try:
            async for chunk in chunks:
                seen = True
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.model:
                    reported_model = chunk.model
                text_chars += len(chunk.text)
                for delta in chunk.tool_calls:
                    text_chars += len(delta.arguments) + len(delta.name or "")
                yield chunk
            finished = True
        finally:
            try:
                if seen:
                    estimated = usage is None
                    if usage is None:
                        usage = Usage(estimate_prompt_tokens(request), estimate_tokens(text_chars))
                    self._emit(
                        request,
                        usage,
                        reported_model,
                        cached=probe.hit,
                        estimated=estimated,
                        started=started,
                        streamed=True,
                        finished=finished,
                    )
            finally:
                await chunks.aclose()

    def _emit(
        self,
        request: ChatRequest,
        usage: Usage,
        reported_model: str,
        *,
        cached: bool,
        estimated: bool,
        started: float,
        streamed: bool,
        finished: bool,
    ) -> None:
        price = self._price(reported_model)
        cost = 0.0 if price is None else price.cost(usage.prompt_tokens, usage.completion_tokens)
        self.sink.record(
            UsageRecord(
                request.tenant_id,
                request.caller_id,
                self.inner.name,
                usage.prompt_tokens,
                usage.completion_tokens,
                0.0 if cached else cost,
                cached,
                time.perf_counter() - started,
                time.time(),
                estimated,
                streamed,
                finished,
                cost if cached else 0.0,
            )
        )

    def _price(self, reported_model: str) -> Price | None:
        prices = self.prices
        if prices is None or isinstance(prices, Price):
            return prices
        price = prices.get(self.inner.name) or prices.get(reported_model)
        if price is None and self.inner.name not in self._unpriced:
            self._unpriced.add(self.inner.name)
            logger.warning(
                "metering.no_price: calls are recorded at cost 0",
                extra={"model": self.inner.name, "reported_model": reported_model},
            )
        return price


class _Probed:
    """Iterates a stream with the cache-hit probe installed around each step only, so the
    probe reaches the cache underneath but never the consumer's code between chunks."""

    __slots__ = ("_chunks", "_probe")

    def __init__(self, chunks: AsyncIterator[ChatChunk], probe: CacheHitProbe) -> None:
        self._chunks = chunks
        self._probe = probe

    def __aiter__(self) -> _Probed:
        return self

    async def __anext__(self) -> ChatChunk:
        token = current_probe.set(self._probe)
        try:
            return await self._chunks.__anext__()
        finally:
            current_probe.reset(token)

    async def aclose(self) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
