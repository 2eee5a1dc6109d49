"""Read models the repositories return besides table rows: pages, agents, usage totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass `next_cursor` back to get the next (None: last page)."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent with its current configuration."""

    id: str
    tenant_id: str
    name: str
    description: str
    version: int
    """The current configuration's version (1 for a new agent)."""
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AgentVersionView:
    """One stored configuration of an agent; versions are immutable once written."""

    agent_id: str
    version: int
    config: dict[str, Any]
    created_at: datetime
    created_by: str | None


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Token and cost totals of one model over a period."""

    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached_requests: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
