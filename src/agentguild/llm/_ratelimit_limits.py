"""Rate limits and their keys: what a limit is, what a limiter answers, how a request is
estimated (see `ratelimit`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias
from urllib.parse import quote

from .base import ChatRequest

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
