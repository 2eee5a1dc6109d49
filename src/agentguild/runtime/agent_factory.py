"""Agents from stored configurations: models by configured name, tools by registered name.

Building an agent resolves its model and tools once; the result is cached per
(agent id, version), so serving a request costs a dictionary lookup. Models are shared by
every agent naming them (one HTTP connection pool per model). Versions are immutable, so
a cached agent never goes stale: a new version is a new key. A `planned` configuration
builds a `PlannedTeam` (planner, specialists, synthesiser; see `PlannedTaskConfig`).

Model calls are made on behalf of the caller bound with `bind_caller` (tenant and API key
or user), so response caches, rate limits and metering see the right tenant even though
one agent object serves every request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import TypeAdapter

from ..agents.assistant import Assistant
from ..agents.base import Agent
from ..config import Settings
from ..errors import ConfigError
from ..llm.base import ChatChunk, ChatModel, ChatRequest, ChatResponse
from ..llm.registry import resolve_model
from ..tools.base import Tool, ToolRegistry
from ..tools.builtin import calculator
from ..types import Event, Message
from .agent_config import AgentConfig, AssistantConfig, PlannedTaskConfig, PlannerConfig

if TYPE_CHECKING:
    from ..tasks import PlannedTeam

ModelProvider: TypeAlias = Callable[[str], ChatModel]
"""Builds the model called `name` (the model stack: cache, retries, metering...)."""

_CALLER: ContextVar[tuple[str, str | None] | None] = ContextVar("agentguild_caller", default=None)


def builtin_tools() -> dict[str, Tool]:
    """The tools agents may name in their configuration, by name."""
    return {tool.name: tool for tool in (calculator,)}


def bind_caller(tenant_id: str, caller_id: str | None) -> None:
    """Make the current task's model calls on behalf of this tenant and caller.

    Set it at the start of the task (or request) that runs the agent: the binding lasts
    until that task ends and is inherited by the tasks it creates.
    """
    _CALLER.set((tenant_id, caller_id))


class CallerScopedModel:
    """A `ChatModel` that stamps each request with the caller bound by `bind_caller`."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def __repr__(self) -> str:
        return f"CallerScopedModel({self.inner!r})"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return await self.inner.complete(_scoped(request))

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self.inner.stream(_scoped(request))


def _scoped(request: ChatRequest) -> ChatRequest:
    caller = _CALLER.get()
    if caller is None:
        return request
    return replace(request, tenant_id=caller[0], caller_id=caller[1])


class AgentFactory:
    """Builds (and caches) the agent a stored configuration describes.

    `model_provider` builds a model by its configured name (default: the model registry
    on `settings`); `tools` are the tools configurations may name (default:
    `builtin_tools()`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tools: Mapping[str, Tool] | None = None,
        model_provider: ModelProvider | None = None,
        max_cached_agents: int = 4096,
    ) -> None:
        self.settings = settings
        self.tools: dict[str, Tool] = dict(builtin_tools() if tools is None else tools)
        self._provide: ModelProvider = model_provider or (lambda n: resolve_model(n, settings))
        self._models: dict[str, ChatModel] = {}
        self._agents: OrderedDict[tuple[str, int], Agent] = OrderedDict()
        self._max_agents = max_cached_agents

    def check(self, config: AgentConfig | Mapping[str, Any]) -> AgentConfig:
        """Validate a configuration against this server: its models and tools must exist.

        Returns the parsed configuration; raises `ConfigError` naming what is unknown.
        """
        parsed = _parse(config)
        models, tools = _references(parsed)
        for model in models:
            model = model or self.settings.default_model
            if model not in self.settings.models:
                raise ConfigError(
                    f"model {model!r} is not configured; configured models: "
                    f"{', '.join(self.settings.models)}"
                )
        unknown = [name for name in tools if name not in self.tools]
        if unknown:
            raise ConfigError(
                f"unknown tool(s) {', '.join(map(repr, unknown))}; "
                f"available tools: {', '.join(sorted(self.tools)) or 'none'}"
            )
        return parsed

    def build(
        self, agent_id: str, version: int, name: str, config: AgentConfig | Mapping[str, Any]
    ) -> Agent:
        """The agent of one configuration version (cached; built on first use)."""
        key = (agent_id, version)
        agent = self._agents.get(key)
        if agent is not None:
            self._agents.move_to_end(key)
            return agent
        agent = self._build(name, self.check(config))
        self._agents[key] = agent
        if len(self._agents) > self._max_agents:
            self._agents.popitem(last=False)
        return agent

    def model(self, name: str | None = None) -> ChatModel:
        """The shared model called `name` (default: the settings' default model)."""
        name = name or self.settings.default_model
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = CallerScopedModel(self._provide(name))
        return model

    async def aclose(self) -> None:
        """Close the models' connection pools and forget every cached agent."""
        models, self._models = list(self._models.values()), {}
        self._agents.clear()
        for model in models:
            inner = model.inner if isinstance(model, CallerScopedModel) else model
            close = getattr(inner, "aclose", None)
            if close is not None:
                await close()

    def planned_team(
        self, config: PlannedTaskConfig | None = None, *, name: str = "planned_team"
    ) -> PlannedTeam:
        """The planned team a configuration describes (default: planner, research, code and
        analysis specialists and synthesiser, all on the default model). Not cached."""
        parsed = config or PlannedTaskConfig(kind="planned")
        self.check(parsed)
        try:
            return self._planned(name, parsed)
        except ValueError as exc:
            raise ConfigError(f"agent {name!r}: {exc}") from exc

    def _build(self, name: str, config: AgentConfig) -> Agent:
        try:
            if isinstance(config, PlannedTaskConfig):
                return self._planned(name, config)
            return self._assistant(name, config)
        except ValueError as exc:  # e.g. an unknown generation parameter
            raise ConfigError(f"agent {name!r}: {exc}") from exc

    def _assistant(
        self,
        name: str,
        config: AssistantConfig,
        *,
        model: str | None = None,
        system_prompt: str | None = None,
        description: str = "",
    ) -> Assistant:
        """An assistant; `model` and `system_prompt` apply where the configuration has none."""
        return Assistant(
            self.model(config.model or model),
            name=name,
            description=description,
            system_prompt=config.system_prompt or system_prompt,
            tools=ToolRegistry(self.tools[tool] for tool in config.tools),
            max_turns=config.max_turns,
            model_params=config.model_params,
        )

    def _planned(self, name: str, config: PlannedTaskConfig) -> PlannedTeam:
        from ..tasks import DEFAULT_CATEGORIES, SYNTHESISER_PROMPT, PlannedTeam, Planner

        team_model = config.model
        specialists: dict[str, Agent] = {}
        for category, part in config.specialists.items():
            agent_name, prompt = _SPECIALISTS[category]
            specialists[category] = self._assistant(
                agent_name,
                _assistant_config(part),
                model=team_model,
                system_prompt=prompt,
                description=DEFAULT_CATEGORIES[category],
            )
        settings = _planner(config.planner)
        planner = Planner(
            self.model(settings.model or team_model),
            categories={category: DEFAULT_CATEGORIES[category] for category in specialists},
            max_subtasks=settings.max_subtasks,
            response_format=settings.response_format,
        )
        synthesiser: Agent | None = None
        if config.synthesiser is not False:
            synthesiser = self._assistant(
                "synthesiser",
                _assistant_config(config.synthesiser),
                model=team_model,
                system_prompt=SYNTHESISER_PROMPT,
            )
        return PlannedTeam(
            planner,
            specialists,
            synthesiser=synthesiser,
            name=name,
            max_concurrency=config.max_concurrency,
            retries=config.retries,
            subtask_timeout_s=config.subtask_timeout_s,
        )


_SPECIALISTS: dict[str, tuple[str, str]] = {
    "research": (
        "researcher",
        "You are the researcher of a team. Find, gather and summarise the information your "
        "part of the task needs; be factual and concise.",
    ),
    "code": (
        "coder",
        "You are the programmer of a team. Write, explain or review the code your part of "
        "the task needs; keep examples short and correct.",
    ),
    "analysis": (
        "analyst",
        "You are the analyst of a team. Compare, calculate and evaluate what your part of "
        "the task asks, and state clear conclusions.",
    ),
}
"""Each category's specialist: its name and default system prompt."""

_ADAPTER: TypeAdapter[AgentConfig] = TypeAdapter(AgentConfig)


def _planner(planner: str | PlannerConfig) -> PlannerConfig:
    return PlannerConfig(model=planner) if isinstance(planner, str) else planner


def _assistant_config(part: bool | str | AssistantConfig) -> AssistantConfig:
    """A part of a planned team as an assistant: its configuration, or one on the model
    named (true: on the team's model)."""
    if isinstance(part, AssistantConfig):
        return part
    return AssistantConfig(model=part if isinstance(part, str) else None)


def _references(config: AgentConfig) -> tuple[list[str | None], list[str]]:
    """The models (None: the default) and tools a configuration names."""
    if isinstance(config, AssistantConfig):
        return [config.model], list(config.tools)
    parts = [_assistant_config(part) for part in config.specialists.values()]
    if config.synthesiser is not False:
        parts.append(_assistant_config(config.synthesiser))
    models = [_planner(config.planner).model or config.model]
    models += [part.model or config.model for part in parts]
    return models, [tool for part in parts for tool in part.tools]


def _parse(config: AgentConfig | Mapping[str, Any]) -> AgentConfig:
    if isinstance(config, AssistantConfig | PlannedTaskConfig):
        return config
    try:
        return _ADAPTER.validate_python(config)
    except ValueError as exc:
        raise ConfigError(f"invalid agent configuration: {exc}") from exc


def run_events(agent: Agent, messages: list[Message], *, stream: bool) -> AsyncIterator[Event]:
    """Run `agent` on `messages`; `stream` asks for text deltas where the agent supports it."""
    if isinstance(agent, Assistant):
        return agent.run(messages, stream=stream)
    return agent.run(messages)
