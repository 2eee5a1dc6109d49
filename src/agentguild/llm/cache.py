"""Response cache: a `ChatModel` wrapper answering repeated requests from a tiered cache.

```python
cache = ResponseCache(l2=RedisStore("redis://localhost:6379/0"))   # or DiskStore(path)
model = CachedModel(OpenAICompatModel("qwen-plus", base_url=...), cache=cache)
```

- Keys: sha256 of a canonical serialisation of the tenant, the model identity (provider,
  base URL, model name), messages, tools, tool_choice, response_format and every
  generation parameter, prefixed by the tenant (`<tenant>:<digest>`). Two tenants never
  share an entry; the users of one tenant do (`caller_id` is not in the key).
- Tiers: L1 in-process LRU (`MemoryStore`), L2 shared (`RedisStore` in production,
  `DiskStore` embedded). An unreachable L2 degrades to L1 with a warning and a counter,
  never a failed request, and is probed again after a short backoff.
- Single-flight: concurrent identical misses make one upstream call (see `_cache_flight`).
- Streaming: a hit replays the original chunk sequence; only a stream that finished (a
  finish reason was seen) is cached. Errors are never cached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Literal, TypeAlias, get_args

from ..errors import ConfigError
from ._cache_entry import CacheEntry, CorruptEntryError
from ._cache_flight import Flight
from ._cache_key import (
    UncacheableRequestError,
    cache_key,
    is_deterministic,
    model_identity,
    tenant_prefix,
)
from ._cache_redis import RedisStore
from ._cache_signal import record_cache_hit
from ._cache_stores import (
    CacheStore,
    CacheStoreError,
    CacheStoreUnavailableError,
    DiskStore,
    MemoryStore,
)
from ._cache_tiers import CacheStats, ResponseCache
from .base import ChatChunk, ChatModel, ChatRequest, ChatResponse

CachePolicy: TypeAlias = Literal["off", "deterministic", "always"]
"""Which requests are cached: none; those with temperature 0 or a seed; all."""

__all__ = [
    "CacheEntry",
    "CachePolicy",
    "CacheStats",
    "CacheStore",
    "CacheStoreError",
    "CacheStoreUnavailableError",
    "CachedModel",
    "CorruptEntryError",
    "DiskStore",
    "MemoryStore",
    "RedisStore",
    "ResponseCache",
    "cache_key",
    "is_deterministic",
    "model_identity",
    "tenant_prefix",
]


class CachedModel:
    """A `ChatModel` that answers from `cache` when it can and calls `inner` when not.

    `policy` picks the cacheable requests ('deterministic' by default: temperature 0 or a
    seed set); `ttl_s` is how long an answer stays cached; `identity` names the upstream
    model in the key (default: `model_identity(inner)`).
    """

    def __init__(
        self,
        inner: ChatModel,
        *,
        cache: ResponseCache,
        policy: CachePolicy = "deterministic",
        ttl_s: float = 3600.0,
        identity: str | None = None,
    ) -> None:
        if policy not in get_args(CachePolicy):
            raise ConfigError(
                f"cache policy {policy!r} is not one of: {', '.join(get_args(CachePolicy))}"
            )
        if ttl_s <= 0:
            raise ConfigError(f"cache ttl_s must be positive, got {ttl_s!r}")
        self.inner = inner
        self.cache = cache
        self.policy: CachePolicy = policy
        self.ttl_s = ttl_s
        self.identity = identity if identity is not None else model_identity(inner)

    @property
    def name(self) -> str:
        return self.inner.name

    def __repr__(self) -> str:
        return f"CachedModel({self.inner!r}, policy={self.policy!r}, identity={self.identity!r})"

    def key_for(self, request: ChatRequest) -> str | None:
        """The cache key of `request`, or None if this model does not cache it."""
        if self.policy == "off" or (
            self.policy == "deterministic" and not is_deterministic(request)
        ):
            return None
        try:
            return cache_key(request, self.identity)
        except UncacheableRequestError:
            return None

    async def complete(self, request: ChatRequest) -> ChatResponse:
        key = self.key_for(request)
        if key is None:
            self.cache.note_bypass()
            return await self.inner.complete(request)
        entry = self.cache.lookup(key)
        if entry is not None:
            record_cache_hit()
            return entry.response()
        flight, joined = self.cache.join_or_start(
            key, partial(self._resolve, request=request, streaming=False), self.ttl_s
        )
        try:
            response = await flight.response()
        finally:
            self.cache.leave(flight)
        if joined or flight.from_shared:
            record_cache_hit()
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        key = self.key_for(request)
        if key is None:
            self.cache.note_bypass()
            async for chunk in self.inner.stream(request):
                yield chunk
            return
        entry = self.cache.lookup(key)
        if entry is not None:
            record_cache_hit()
            for chunk in entry.chunks():
                yield chunk
            return
        flight, joined = self.cache.join_or_start(
            key, partial(self._resolve, request=request, streaming=True), self.ttl_s
        )
        if joined:
            record_cache_hit()
        replay = flight.replay()
        try:
            first = True
            async for chunk in replay:
                if first and flight.from_shared:
                    record_cache_hit()
                first = False
                yield chunk
        finally:
            self.cache.leave(flight)
            await replay.aclose()

    async def _resolve(
        self, flight: Flight, *, request: ChatRequest, streaming: bool
    ) -> CacheEntry | None:
        """The upstream call of a flight; the entry to cache, or None for an unfinished
        stream (one that ended without a finish reason)."""
        if not streaming:
            return CacheEntry.from_response(await self.inner.complete(request))
        finished = False
        chunks = self.inner.stream(request)
        try:
            async for chunk in chunks:
                finished = finished or chunk.finish_reason is not None
                flight.publish(chunk)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        return CacheEntry.from_chunks(flight.chunks) if finished else None
