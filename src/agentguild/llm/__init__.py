"""Model clients, the `ChatModel` protocol they share, and the gateway wrappers.

Every wrapper is itself a `ChatModel`, so a stack is plain composition::

    MeteredModel(CachedModel(Router([Deployment(RetryingModel(OpenAICompatModel(...)))]),
                             cache=ResponseCache()), prices=None, sink=UsageAggregator())

`Gateway` builds such a stack for every configured model (see `agentguild.llm.stack`).
"""

from .base import (
    ChatChunk,
    ChatModel,
    ChatRequest,
    ChatResponse,
    ChunkAccumulator,
    ToolCallDelta,
    ToolChoice,
)
from .cache import CachedModel, CacheStats, DiskStore, MemoryStore, RedisStore, ResponseCache
from .local import LocalModel
from .metering import (
    CallbackSink,
    MeteredModel,
    Price,
    QueueSink,
    UsageAggregator,
    UsageRecord,
)
from .openai_compat import OpenAICompatModel
from .ratelimit import InMemoryLimiter, RateLimit, RateLimitedModel
from .resilience import BreakerModel, CircuitBreaker, RetryBudget, RetryingModel, TimeoutModel
from .router import Deployment, Router
from .scripted import ScriptedModel, ScriptExhaustedError, tool_call
from .stack import Gateway

__all__ = [
    "BreakerModel",
    "CacheStats",
    "CachedModel",
    "CallbackSink",
    "ChatChunk",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "ChunkAccumulator",
    "CircuitBreaker",
    "Deployment",
    "DiskStore",
    "Gateway",
    "InMemoryLimiter",
    "LocalModel",
    "MemoryStore",
    "MeteredModel",
    "OpenAICompatModel",
    "Price",
    "QueueSink",
    "RateLimit",
    "RateLimitedModel",
    "RedisStore",
    "ResponseCache",
    "RetryBudget",
    "RetryingModel",
    "Router",
    "ScriptExhaustedError",
    "ScriptedModel",
    "TimeoutModel",
    "ToolCallDelta",
    "ToolChoice",
    "UsageAggregator",
    "UsageRecord",
    "tool_call",
]
