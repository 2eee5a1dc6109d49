"""Planned agent configurations (`kind: planned`): validation and the teams they build."""

from __future__ import annotations

import pytest

from agentguild.agents.assistant import Assistant
from agentguild.config import ScriptedModelConfig, Settings
from agentguild.errors import ConfigError
from agentguild.llm.scripted import ScriptedModel
from agentguild.runtime.agent_config import AssistantConfig, PlannedTaskConfig
from agentguild.runtime.agent_factory import AgentFactory
from agentguild.tasks import PlannedTeam

SETTINGS = Settings(
    models={
        name: ScriptedModelConfig(provider="scripted", replies=["hi"])
        for name in ("main", "fast", "smart")
    },
    default_model="main",
)


@pytest.fixture
def factory() -> AgentFactory:
    return AgentFactory(SETTINGS, model_provider=lambda name: ScriptedModel(["hi"], name=name))


def _assistant(team: PlannedTeam, category: str) -> Assistant:
    agent = team.scheduler.specialists[category]
    assert isinstance(agent, Assistant)
    return agent


def test_the_default_planned_team_has_the_three_specialists_on_the_default_model(
    factory: AgentFactory,
) -> None:
    team = factory.planned_team()

    assert list(team.scheduler.specialists) == ["research", "code", "analysis"]
    assert [a.name for a in team.scheduler.specialists.values()] == [
        "researcher",
        "coder",
        "analyst",
    ]
    assert list(team.planner.categories) == ["research", "code", "analysis"]
    assert team.planner.model.name == "main"
    assert team.synthesiser is not None
    assert {_assistant(team, c).model.name for c in ("research", "code", "analysis")} == {"main"}


def test_parts_take_model_names_or_assistant_configurations(factory: AgentFactory) -> None:
    config = {
        "kind": "planned",
        "model": "fast",
        "planner": {"model": "smart", "max_subtasks": 3},
        "specialists": {
            "research": "smart",
            "code": {"system_prompt": "Write Go.", "tools": ["calculator"]},
        },
        "synthesiser": False,
        "max_concurrency": 2,
        "retries": 1,
    }

    team = factory.build("agt_1", 1, "duo", config)

    assert isinstance(team, PlannedTeam)
    assert team.name == "duo"
    assert (team.planner.model.name, team.planner.max_subtasks) == ("smart", 3)
    assert list(team.planner.categories) == ["research", "code"]
    assert _assistant(team, "research").model.name == "smart"
    coder = _assistant(team, "code")
    assert (coder.model.name, coder.system_prompt) == ("fast", "Write Go.")
    assert coder.tools.names == ["calculator"]
    assert team.synthesiser is None
    assert (team.scheduler.max_concurrency, team.scheduler.retries) == (2, 1)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"kind": "planned", "model": "gpt-x"}, "model 'gpt-x' is not configured"),
        ({"kind": "planned", "planner": "gpt-x"}, "model 'gpt-x' is not configured"),
        ({"kind": "planned", "specialists": {"code": "gpt-x"}}, "model 'gpt-x'"),
        ({"kind": "planned", "synthesiser": {"model": "gpt-x"}}, "model 'gpt-x'"),
        ({"kind": "planned", "specialists": {"code": {"tools": ["shell"]}}}, "'shell'"),
        ({"kind": "planned", "specialists": {"poetry": "main"}}, "invalid agent configuration"),
        ({"kind": "planned", "specialists": {}}, "invalid agent configuration"),
        ({"kind": "swarm"}, "invalid agent configuration"),
    ],
)
def test_check_names_what_a_planned_configuration_gets_wrong(
    factory: AgentFactory, config: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        factory.check(config)


def test_a_configuration_without_kind_is_an_assistant(factory: AgentFactory) -> None:
    assert isinstance(factory.check({"model": "fast"}), AssistantConfig)
    assert isinstance(factory.check({"kind": "planned"}), PlannedTaskConfig)
