"""Declarative agents and teams: YAML specs build the same objects code would."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentguild import Assistant, ConfigError, tool
from agentguild.agents.agent_tool import AgentTool
from agentguild.agents.spec import agent_from_spec, load_agent_spec, termination_from_spec
from agentguild.agents.teams import RoundRobinTeam, RouterAgent, SelectorTeam, Swarm
from agentguild.agents.termination import AnyOf, MaxMessages, TextMention
from agentguild.config import Settings
from agentguild.llm import ScriptedModel
from agentguild.tasks import PlannedTeam

EXPERT_TEAM = """
kind: round_robin
name: expert_team
description: Researcher, writer and reviewer in turn.
model: demo
termination: {any: [{text_mention: APPROVE}, {max_messages: 6}]}
members:
  - name: researcher
    description: Finds the facts.
    system_prompt: You research.
    tools: [calculator]
  - name: writer
    system_prompt: You write.
  - file: reviewer.yaml
"""

REVIEWER = """
name: reviewer
system_prompt: Reply APPROVE when the draft is good.
"""


@pytest.fixture
def settings() -> Settings:
    return Settings(
        models={
            "demo": {"provider": "scripted", "replies": ["APPROVE"]},
            "other": {"provider": "scripted", "replies": ["x"]},
        }
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_a_yaml_team_builds_and_runs(tmp_path: Path, settings: Settings) -> None:
    write(tmp_path, "reviewer.yaml", REVIEWER)
    team = load_agent_spec(write(tmp_path, "team.yaml", EXPERT_TEAM), settings=settings)
    assert isinstance(team, RoundRobinTeam)
    assert (team.name, team.description) == (
        "expert_team",
        "Researcher, writer and reviewer in turn.",
    )
    assert list(team.members) == ["researcher", "writer", "reviewer"]
    researcher = team.members["researcher"]
    assert isinstance(researcher, Assistant)
    assert (researcher.description, researcher.system_prompt) == (
        "Finds the facts.",
        "You research.",
    )
    assert researcher.tools.names == ["calculator"]
    assert isinstance(team.termination, AnyOf)
    result = await team.result("Write about owls")
    assert result.output == "APPROVE"
    assert result.turns == 1


def test_every_agent_shares_one_model_per_name(tmp_path: Path, settings: Settings) -> None:
    write(tmp_path, "reviewer.yaml", REVIEWER)
    team = load_agent_spec(write(tmp_path, "team.yaml", EXPERT_TEAM), settings=settings)
    assert isinstance(team, RoundRobinTeam)
    models = {id(m.model) for m in team.members.values() if isinstance(m, Assistant)}
    assert len(models) == 1


def test_the_model_option_replaces_every_model(tmp_path: Path, settings: Settings) -> None:
    write(tmp_path, "reviewer.yaml", REVIEWER)
    override = ScriptedModel(["hi"], name="override")
    team = load_agent_spec(
        write(tmp_path, "team.yaml", EXPERT_TEAM), settings=settings, model=override
    )
    assert isinstance(team, RoundRobinTeam)
    assert all(m.model is override for m in team.members.values() if isinstance(m, Assistant))
    by_name = load_agent_spec(tmp_path / "team.yaml", settings=settings, model="other")
    assert isinstance(by_name, RoundRobinTeam)
    researcher = by_name.members["researcher"]
    assert isinstance(researcher, Assistant)
    assert researcher.model.name == "other"


def test_each_team_kind_builds_from_a_mapping(settings: Settings) -> None:
    members = [{"name": "a", "description": "does a"}, {"name": "b"}]
    common = {"model": "demo", "members": members}
    selector = agent_from_spec({"kind": "selector", "parallel": True, **common}, settings=settings)
    router = agent_from_spec({"kind": "router", "default": "b", **common}, settings=settings)
    swarm = agent_from_spec(
        {"kind": "swarm", "user_handoff": True, "handoffs": {"a": ["b"]}, **common},
        settings=settings,
    )
    assert isinstance(selector, SelectorTeam)
    assert selector.parallel
    assert selector.descriptions == {"a": "does a", "b": ""}
    assert isinstance(router, RouterAgent)
    assert router.default == "b"
    assert isinstance(swarm, Swarm)
    assert swarm.handoffs["a"] == ("b", "user")


def test_hierarchies_are_agent_tools(settings: Settings) -> None:
    executive = agent_from_spec(
        {
            "name": "executive",
            "model": "demo",
            "agent_tools": [
                {
                    "name": "manager",
                    "agent_tools": [{"name": "analyst", "description": "numbers"}],
                }
            ],
        },
        settings=settings,
    )
    assert isinstance(executive, Assistant)
    [manager_tool] = list(executive.tools)
    assert isinstance(manager_tool, AgentTool)
    manager = manager_tool.agent
    assert isinstance(manager, Assistant)
    [analyst_tool] = list(manager.tools)
    assert analyst_tool.spec.description == "numbers"


def test_a_planned_team_spec(settings: Settings) -> None:
    planned = agent_from_spec(
        {
            "kind": "planned",
            "name": "collab",
            "model": "demo",
            "specialists": {
                "research": {"name": "researcher", "description": "finds facts"},
                "code": {"name": "coder"},
            },
            "planner": {"max_subtasks": 5, "response_format": "json_object"},
            "max_concurrency": 8,
            "retries": 1,
        },
        settings=settings,
    )
    assert isinstance(planned, PlannedTeam)
    assert planned.planner.categories == {
        "research": "finds facts",
        "code": "write, explain or review code",
    }
    assert (planned.planner.max_subtasks, planned.scheduler.max_concurrency) == (5, 8)
    assert planned.synthesiser is not None


def test_tools_passed_in_can_be_named(settings: Settings) -> None:
    @tool
    def search(q: str) -> str:
        """Search."""
        return q

    agent = agent_from_spec(
        {"name": "a", "model": "demo", "tools": ["search"]}, settings=settings, tools=[search]
    )
    assert isinstance(agent, Assistant)
    assert agent.tools.names == ["search"]


def test_termination_specs() -> None:
    condition = termination_from_spec(
        {"all": [{"max_messages": 2}, {"text_mention": {"text": "OK", "sources": ["r"]}}]}
    )
    assert condition == (MaxMessages(2) & TextMention("OK", sources=["r"]))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "a", "model": "demo", "tools": ["nope"]}, "unknown tool 'nope'"),
        ({"name": "a", "modle": "demo"}, "modle"),
        ({"kind": "round_robin", "members": []}, "members"),
        ({"kind": "squad", "members": [{"name": "a"}]}, "kind"),
        (
            {
                "kind": "round_robin",
                "model": "demo",
                "members": [{"name": "a"}],
                "termination": {"max_mesages": 3},
            },
            "unknown condition 'max_mesages'",
        ),
        (
            {"kind": "round_robin", "model": "demo", "members": [{"name": "a"}, {"name": "a"}]},
            "unique",
        ),
        ({"name": "a", "model": "missing"}, "not configured"),
    ],
    ids=["tool", "typo", "no-members", "kind", "termination", "duplicate", "model"],
)
def test_mistakes_are_config_errors_that_say_what_is_wrong(
    spec: dict[str, object], message: str, settings: Settings
) -> None:
    with pytest.raises(ConfigError, match=message):
        agent_from_spec(spec, settings=settings)


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_agent_spec(tmp_path / "missing.yaml")
    loop = write(tmp_path, "loop.yaml", "kind: round_robin\nmembers: [{file: loop.yaml}]\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_agent_spec(loop)
    with pytest.raises(ConfigError, match="mapping"):
        load_agent_spec(write(tmp_path, "list.yaml", "- a\n- b\n"))
