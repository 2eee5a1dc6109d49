"""Agents and teams declared in YAML: `load_agent_spec("team.yaml")` builds them.

A spec is a mapping; `kind` says what it builds (default `assistant`):

```yaml
kind: round_robin            # assistant | round_robin | selector | router | swarm | planned
name: expert_team
model: local                 # the model of every agent below that names none
termination: {any: [{text_mention: APPROVE}, {max_messages: 6}]}
members:
  - name: researcher
    description: Finds the key facts.
    system_prompt: You research the topic and list the key facts.
    tools: [calculator]
  - file: writer.yaml        # another spec file, relative to this one
```

Models are configured names (`agentguild models`), resolved once per load; `model=`
overrides every one of them (the CLI's `--model`). Tools are named: the built-in tools
plus those passed in `tools=`. See docs/teams.md for every field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
import yaml

from ..errors import ConfigError
from ..llm.base import ChatModel
from ..tools.base import Tool
from .agent_tool import AgentTool
from .assistant import Assistant
from .base import Agent
from .termination import (
    AllOf,
    AnyOf,
    HandoffTermination,
    MaxMessages,
    Termination,
    TextMention,
    Timeout,
    TokenBudget,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["AgentSpec", "agent_from_spec", "load_agent_spec", "termination_from_spec"]


class _Spec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    description: str = ""
    model: str | None = None


class AssistantSpec(_Spec):
    kind: Literal["assistant"] = "assistant"
    system_prompt: str | None = None
    tools: list[str] = []
    agent_tools: list[AgentSpec] = []
    """Agents (or teams) this assistant can call as tools."""
    max_turns: Annotated[int, pydantic.Field(ge=1)] = 10
    stream: bool = False
    model_params: dict[str, Any] = {}


class _TeamSpec(_Spec):
    members: Annotated[list[AgentSpec], pydantic.Field(min_length=1)]
    termination: Any = None
    max_turns: Annotated[int, pydantic.Field(ge=1)] | None = None


class RoundRobinSpec(_TeamSpec):
    kind: Literal["round_robin"]


class SelectorSpec(_TeamSpec):
    kind: Literal["selector"]
    selector_prompt: str | None = None
    allow_repeated_speaker: bool = False
    parallel: bool = False
    max_parallel: Annotated[int, pydantic.Field(ge=1)] = 3
    model_params: dict[str, Any] = {}


class RouterSpec(_Spec):
    kind: Literal["router"]
    members: Annotated[list[AgentSpec], pydantic.Field(min_length=1)]
    routing_prompt: str | None = None
    default: str | None = None
    model_params: dict[str, Any] = {}


class SwarmSpec(_TeamSpec):
    kind: Literal["swarm"]
    handoffs: dict[str, list[str]] | None = None
    user_handoff: bool = False


class PlannerSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    max_subtasks: Annotated[int, pydantic.Field(ge=1)] = 8
    response_format: Literal["json_schema", "json_object", "text"] = "json_schema"
    prompt: str | None = None


class PlannedSpec(_Spec):
    kind: Literal["planned"]
    specialists: Annotated[dict[str, AgentSpec], pydantic.Field(min_length=1)]
    """Category -> the agent doing subtasks of that category."""
    planner: PlannerSpec = PlannerSpec()
    synthesiser: AgentSpec | bool = True
    """An agent spec, true (an assistant on the team's model) or false (join results)."""
    max_concurrency: Annotated[int, pydantic.Field(ge=1)] = 4
    retries: Annotated[int, pydantic.Field(ge=0)] = 0
    subtask_timeout_s: Annotated[float, pydantic.Field(gt=0)] | None = None


AnySpec = AssistantSpec | RoundRobinSpec | SelectorSpec | RouterSpec | SwarmSpec | PlannedSpec
AgentSpec = Annotated[AnySpec, pydantic.Field(discriminator="kind")]
"""Any agent or team spec (validated)."""

for _model in (AssistantSpec, _TeamSpec, RoundRobinSpec, SelectorSpec, RouterSpec, SwarmSpec):
    _model.model_rebuild()
PlannedSpec.model_rebuild()
_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(AgentSpec)


def load_agent_spec(
    path: str | Path,
    *,
    settings: Settings | None = None,
    model: str | ChatModel | None = None,
    tools: Iterable[Tool] | Mapping[str, Tool] = (),
) -> Agent:
    """The agent or team a YAML spec file describes, ready to run.

    `settings` resolve model names (default: `load_settings()`); `model` replaces every
    model the spec names (a configured name, or a model object); `tools` adds tools the
    spec may name besides the built-in ones. Raises `ConfigError` naming the file and the
    field at fault.
    """
    file = Path(path)
    data = _read(file, seen=())
    return agent_from_spec(data, settings=settings, model=model, tools=tools, source=str(file))


def agent_from_spec(
    data: Mapping[str, Any],
    *,
    settings: Settings | None = None,
    model: str | ChatModel | None = None,
    tools: Iterable[Tool] | Mapping[str, Tool] = (),
    source: str = "agent spec",
) -> Agent:
    """The agent or team a spec mapping describes (as `load_agent_spec`, without a file;
    `file:` references are not resolved)."""
    try:
        spec = _ADAPTER.validate_python(_with_kind(data))
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    builder = _Builder(settings, model, _tool_table(tools), source)
    return builder.agent(spec, inherited=None, default_name=spec.kind)


def termination_from_spec(data: object, *, where: str = "termination") -> Termination:
    """A termination condition from its spec: `{max_messages: 6}`, `{text_mention: APPROVE}`
    (or `{text_mention: {text: APPROVE, sources: [reviewer]}}`), `{token_budget: 5000}`,
    `{timeout: 60}`, `{handoff: user}`, `{any: [...]}`, `{all: [...]}`."""
    if not isinstance(data, Mapping) or len(data) != 1:
        raise ConfigError(f"{where}: must be a mapping with one key, e.g. {{max_messages: 6}}")
    ((key, value),) = data.items()
    try:
        if key in ("any", "all"):
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{where}.{key}: must be a non-empty list of conditions")
            parts = tuple(
                termination_from_spec(v, where=f"{where}.{key}[{i}]") for i, v in enumerate(value)
            )
            return AnyOf(parts) if key == "any" else AllOf(parts)
        if key == "max_messages":
            return MaxMessages(int(value))
        if key == "token_budget":
            return TokenBudget(int(value))
        if key == "timeout":
            return Timeout(float(value))
        if key == "handoff":
            return HandoffTermination(str(value))
        if key == "text_mention":
            if isinstance(value, Mapping):
                return TextMention(str(value["text"]), value.get("sources"))
            return TextMention(str(value))
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None
    raise ConfigError(
        f"{where}: unknown condition {key!r}; use max_messages, text_mention, token_budget, "
        "timeout, handoff, any or all"
    )


class _Builder:
    """Turns validated specs into agents, resolving each model name once."""

    def __init__(
        self,
        settings: Settings | None,
        override: str | ChatModel | None,
        tools: Mapping[str, Tool],
        source: str,
    ) -> None:
        self._settings = settings
        self._override = override
        self._tools = tools
        self._source = source
        self._models: dict[str, ChatModel] = {}

    def model(self, name: str | None) -> ChatModel:
        if self._override is not None and not isinstance(self._override, str):
            return self._override
        wanted = self._override or name
        if wanted is None:
            wanted = self._get_settings().default_model
        if wanted not in self._models:
            from ..llm.registry import resolve_model

            self._models[wanted] = resolve_model(wanted, self._get_settings())
        return self._models[wanted]

    def _get_settings(self) -> Settings:
        if self._settings is None:
            from ..config import load_settings

            self._settings = load_settings()
        return self._settings

    def agent(self, spec: AnySpec, *, inherited: str | None, default_name: str) -> Agent:
        name = spec.name or default_name
        model_name = spec.model or inherited
        if isinstance(spec, AssistantSpec):
            return self._assistant(spec, name, model_name)
        if isinstance(spec, PlannedSpec):
            return self._planned(spec, name, model_name)
        members = [
            self.agent(m, inherited=model_name, default_name=f"{name}_member_{i + 1}")
            for i, m in enumerate(spec.members)
        ]
        return self._team(spec, name, model_name, members)

    def _assistant(self, spec: AssistantSpec, name: str, model_name: str | None) -> Agent:
        tools: list[Tool] = [self._tool(tool, name) for tool in spec.tools]
        tools += [
            AgentTool(self.agent(sub, inherited=model_name, default_name=f"{name}_helper"))
            for sub in spec.agent_tools
        ]
        return Assistant(
            self.model(model_name),
            name=name,
            description=spec.description,
            system_prompt=spec.system_prompt,
            tools=tools,
            max_turns=spec.max_turns,
            stream=spec.stream,
            model_params=spec.model_params,
        )

    def _team(
        self,
        spec: RoundRobinSpec | SelectorSpec | RouterSpec | SwarmSpec,
        name: str,
        model_name: str | None,
        members: list[Agent],
    ) -> Agent:
        from .teams import RoundRobinTeam, RouterAgent, SelectorTeam, Swarm
        from .teams._choose import ROUTER_PROMPT, SELECTOR_PROMPT

        where = f"{self._source}: {name}"
        common: dict[str, Any] = {"name": name, "description": spec.description}
        if not isinstance(spec, RouterSpec):
            if spec.termination is not None:
                common["termination"] = termination_from_spec(
                    spec.termination, where=f"{where}.termination"
                )
            if spec.max_turns is not None:
                common["max_turns"] = spec.max_turns
        try:
            if isinstance(spec, RoundRobinSpec):
                return RoundRobinTeam(members, **common)
            if isinstance(spec, SelectorSpec):
                return SelectorTeam(
                    members,
                    self.model(model_name),
                    selector_prompt=spec.selector_prompt or SELECTOR_PROMPT,
                    allow_repeated_speaker=spec.allow_repeated_speaker,
                    parallel=spec.parallel,
                    max_parallel=spec.max_parallel,
                    model_params=spec.model_params,
                    **common,
                )
            if isinstance(spec, RouterSpec):
                return RouterAgent(
                    members,
                    self.model(model_name),
                    routing_prompt=spec.routing_prompt or ROUTER_PROMPT,
                    default=spec.default,
                    model_params=spec.model_params,
                    **common,
                )
            return Swarm(members, handoffs=spec.handoffs, user_handoff=spec.user_handoff, **common)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def _planned(self, spec: PlannedSpec, name: str, model_name: str | None) -> Agent:
        from ..tasks import DEFAULT_CATEGORIES, PLANNER_PROMPT, PlannedTeam, Planner
        from .teams._choose import description_of

        specialists = {
            category: self.agent(sub, inherited=model_name, default_name=category)
            for category, sub in spec.specialists.items()
        }
        planner = Planner(
            self.model(spec.planner.model or model_name),
            categories={
                c: description_of(a) or DEFAULT_CATEGORIES.get(c, c) for c, a in specialists.items()
            },
            max_subtasks=spec.planner.max_subtasks,
            prompt=spec.planner.prompt or PLANNER_PROMPT,
            response_format=spec.planner.response_format,
        )
        synthesiser: Agent | ChatModel | None = None
        if spec.synthesiser is True:
            synthesiser = self.model(model_name)
        elif spec.synthesiser is not False:
            synthesiser = self.agent(spec.synthesiser, inherited=model_name, default_name="synth")
        return PlannedTeam(
            planner,
            specialists,
            synthesiser=synthesiser,
            name=name,
            description=spec.description,
            max_concurrency=spec.max_concurrency,
            retries=spec.retries,
            subtask_timeout_s=spec.subtask_timeout_s,
        )

    def _tool(self, tool: str, agent: str) -> Tool:
        found = self._tools.get(tool)
        if found is None:
            raise ConfigError(
                f"{self._source}: agent {agent!r} names unknown tool {tool!r}; "
                f"available tools: {', '.join(sorted(self._tools)) or 'none'}"
            )
        return found


def _tool_table(extra: Iterable[Tool] | Mapping[str, Tool]) -> dict[str, Tool]:
    from ..tools import builtin

    table = {v.name: v for v in vars(builtin).values() if isinstance(v, Tool)}
    table.update(extra if isinstance(extra, Mapping) else {t.name: t for t in extra})
    return table


def _with_kind(data: Any) -> Any:
    """Where an agent is expected, `kind` defaults to `assistant`."""
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    out.setdefault("kind", "assistant")
    for key in ("members", "agent_tools"):
        if isinstance(out.get(key), list):
            out[key] = [_with_kind(member) for member in out[key]]
    if isinstance(out.get("specialists"), Mapping):
        out["specialists"] = {k: _with_kind(v) for k, v in out["specialists"].items()}
    if isinstance(out.get("synthesiser"), Mapping):
        out["synthesiser"] = _with_kind(out["synthesiser"])
    return out


def _read(file: Path, *, seen: tuple[Path, ...]) -> dict[str, Any]:
    """A spec file's mapping, with its `file:` references replaced by their contents."""
    resolved = file.resolve()
    if resolved in seen:
        raise ConfigError(f"spec file {file} includes itself (via {seen[-1]})")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read spec file {file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"spec file {file} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"spec file {file} must hold a mapping (an agent or a team)")
    included: dict[str, Any] = _include(data, file.parent, (*seen, resolved))
    return included


def _include(data: Any, base: Path, seen: tuple[Path, ...]) -> Any:
    if isinstance(data, list):
        return [_include(item, base, seen) for item in data]
    if not isinstance(data, dict):
        return data
    if set(data) == {"file"} and isinstance(data["file"], str):
        return _read(base / data["file"], seen=seen)
    return {key: _include(value, base, seen) for key, value in data.items()}


def _describe(exc: pydantic.ValidationError, source: str) -> str:
    lines = [f"invalid agent spec in {source}:"]
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {where or '(top level)'}: {error['msg']}")
    return "\n".join(lines)
