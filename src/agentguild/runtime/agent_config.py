"""The stored configuration of an agent, as the API accepts it and the runner builds it.

Clients name models and tools; they never give URLs or keys: a model must be one the
server's settings configure, a tool one the server registers (see `builtin_tools`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AgentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]


class AssistantConfig(BaseModel):
    """An `Assistant`: model, system prompt, tools, limits."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["assistant"] = "assistant"
    model: str | None = None
    """A configured model's name; None uses the server's default model."""
    system_prompt: Annotated[str, Field(max_length=20_000)] | None = None
    tools: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=64)
    """Names of server-registered tools (e.g. `calculator`)."""
    max_turns: Annotated[int, Field(ge=1, le=100)] = 10
    model_params: dict[str, Any] = Field(default_factory=dict)
    """Generation parameters: temperature, top_p, max_tokens, seed, stop."""


AgentConfig = AssistantConfig
"""Every kind of agent configuration (teams join this union later)."""
