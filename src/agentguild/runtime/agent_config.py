"""The stored configuration of an agent, as the API accepts it and the runner builds it.

Clients name models and tools; they never give URLs or keys: a model must be one the
server's settings configure, a tool one the server registers (see `builtin_tools`).
A configuration's `kind` says what it builds: `assistant` (the default) or `planned`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

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


ModelName = Annotated[str, Field(min_length=1, max_length=200)]
"""A configured model's name."""
Category = Literal["research", "code", "analysis"]
"""The kinds of subtask a planned team's specialists do."""


def _default_specialists() -> dict[Category, ModelName | AssistantConfig]:
    return {"research": AssistantConfig(), "code": AssistantConfig(), "analysis": AssistantConfig()}


class PlannerConfig(BaseModel):
    """The planner of a planned team."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName | None = None
    """A configured model's name; None uses the team's model."""
    max_subtasks: Annotated[int, Field(ge=1, le=20)] = 6
    response_format: Literal["json_schema", "json_object", "text"] = "json_schema"
    """How the plan is asked for: `json_schema` (constrained), `json_object`, or `text` for
    endpoints that support neither."""


class PlannedTaskConfig(BaseModel):
    """A planned team (`agentguild.tasks.PlannedTeam`, see docs/tasks.md): a planner splits
    each task into subtasks of the categories research, code and analysis; the specialist
    of each category does them (independent ones in parallel); a synthesiser merges the
    results into the answer.

    Every part names a configured model or is an assistant configuration; parts that name
    no model use the team's `model` (default: the server's default model).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["planned"]
    model: ModelName | None = None
    """The model of every part that names none; None uses the server's default model."""
    planner: ModelName | PlannerConfig = Field(default_factory=PlannerConfig)
    """A model's name, or the planner's settings."""
    specialists: dict[Category, ModelName | AssistantConfig] = Field(
        default_factory=_default_specialists, min_length=1
    )
    """Category -> a model's name (an assistant on it) or an assistant configuration.
    Subtasks of a category without a specialist go to the first one."""
    synthesiser: bool | ModelName | AssistantConfig = True
    """Merges the results: true (an assistant on the team's model), a model's name, an
    assistant configuration, or false (the results joined under their titles)."""
    max_concurrency: Annotated[int, Field(ge=1, le=16)] = 4
    """Subtasks running at once."""
    retries: Annotated[int, Field(ge=0, le=5)] = 0
    """Further attempts for a failed subtask."""
    subtask_timeout_s: Annotated[float, Field(gt=0, le=3600)] | None = None


def _kind(value: Any) -> str | None:
    kind = (
        value.get("kind", "assistant")
        if isinstance(value, dict)
        else getattr(value, "kind", "assistant")
    )
    return kind if isinstance(kind, str) else None


AgentConfig = Annotated[
    Annotated[AssistantConfig, Tag("assistant")] | Annotated[PlannedTaskConfig, Tag("planned")],
    Discriminator(_kind),
]
"""Every kind of agent configuration, by `kind` (`assistant` when it is missing)."""
