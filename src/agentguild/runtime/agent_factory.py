"""Agents from stored configurations: models by configured name, tools by registered name.

Building an agent resolves its model and tools once; the result is cached per
(agent id, version), so serving a request costs a dictionary lookup. Models are shared by
every agent naming them (one HTTP connection pool per model). Versions are immutable, so
a cached agent never goes stale: a new version is a new key.

Model calls are made on behalf of the caller bound with `bind_caller` (tenant and API key
or user), so response caches, rate limits and metering see the right tenant even though
one agent object serves every request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, TypeAlias

from ..agents.assistant import Assistant
from ..agents.base import Agent
from ..config import Settings
from ..errors import ConfigError
from ..llm.base import ChatChunk, ChatModel, ChatRequest, ChatResponse
from ..llm.registry import resolve_model
from ..tools.base import Tool, ToolRegistry
from ..tools.builtin import calculator
from ..types import Event, Message
from .agent_config import AgentConfig, AssistantConfig

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
        """Validate a configuration against this server: its model and tools must exist.

        Returns the parsed configuration; raises `ConfigError` naming what is unknown.
        """
        parsed = _parse(config)
        model = parsed.model or self.settings.default_model
        if model not in self.settings.models:
            raise ConfigError(
                f"model {model!r} is not configured; configured models: "
                f"{', '.join(self.settings.models)}"
            )
        unknown = [name for name in parsed.tools if name not in self.tools]
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

    def _build(self, name: str, config: AssistantConfig) -> Agent:
        try:
            return Assistant(
                self.model(config.model),
                name=name,
                system_prompt=config.system_prompt,
                tools=ToolRegistry(self.tools[tool] for tool in config.tools),
                max_turns=config.max_turns,
                model_params=config.model_params,
            )
        except ValueError as exc:  # e.g. an unknown generation parameter
            raise ConfigError(f"agent {name!r}: {exc}") from exc


def _parse(config: AgentConfig | Mapping[str, Any]) -> AgentConfig:
    if isinstance(config, AssistantConfig):
        return config
    try:
        return AssistantConfig.model_validate(config)
    except ValueError as exc:
        raise ConfigError(f"invalid agent configuration: {exc}") from exc


def run_events(agent: Agent, messages: list[Message], *, stream: bool) -> AsyncIterator[Event]:
    """Run `agent` on `messages`; `stream` asks for text deltas where the agent supports it."""
    if isinstance(agent, Assistant):
        return agent.run(messages, stream=stream)
    return agent.run(messages)
