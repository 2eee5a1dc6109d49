"""AgentTool: agents and teams as tools of other agents (hierarchies)."""

from __future__ import annotations

import asyncio

from agentguild import Assistant, Message, RunResult, ToolResultEvent
from agentguild.agents.agent_tool import AgentTool
from agentguild.agents.teams import RoundRobinTeam
from agentguild.llm import ChatRequest, ChatResponse, ScriptedModel, tool_call
from agentguild.types import Event


def answers_last_tool_result(prefix: str) -> object:
    def reply(request: ChatRequest) -> str:
        return f"{prefix}: {request.messages[-1].text}"

    return reply


def specialist(name: str, answer: str, description: str = "") -> Assistant:
    return Assistant(ScriptedModel([answer], cycle=True), name=name, description=description)


async def test_the_tool_runs_the_agent_on_the_task_and_returns_its_answer() -> None:
    analyst = Assistant(
        ScriptedModel([lambda r: f"analysed: {r.messages[-1].text}"]), name="analyst"
    )
    tool = AgentTool(analyst)
    assert tool.name == "analyst"
    assert tool.spec.parameters["required"] == ["task"]
    assert await tool.invoke('{"task": "Q3 revenue"}') == "analysed: Q3 revenue"


async def test_the_description_comes_from_the_agent_unless_given() -> None:
    analyst = specialist("analyst", "x", description="Analyses numbers.")
    assert AgentTool(analyst).spec.description == "Analyses numbers."
    assert AgentTool(analyst, description="Other.").spec.description == "Other."
    assert "analyst" in AgentTool(specialist("analyst", "x")).spec.description


async def test_a_three_level_hierarchy_passes_answers_up() -> None:
    # specialists -> manager -> executive
    analyst = specialist("analyst", "numbers look good")
    legal = specialist("legal", "no legal risk")
    manager_model = ScriptedModel(
        [
            Message.assistant(
                tool_calls=[tool_call("analyst", task="check"), tool_call("legal", task="check")]
            ),
            lambda r: "recommend: " + " / ".join(m.text for m in r.messages if m.role == "tool"),
        ]
    )
    manager = Assistant(manager_model, name="manager", tools=[AgentTool(analyst), AgentTool(legal)])
    executive_model = ScriptedModel(
        [
            Message.assistant(tool_calls=[tool_call("manager", task="Should we expand?")]),
            answers_last_tool_result("decision"),
        ]
    )
    executive = Assistant(executive_model, name="executive", tools=[AgentTool(manager)])
    result = await executive.result("Decide on expansion")
    assert result.output == "decision: recommend: numbers look good / no legal risk"
    assert manager_model.requests[0].messages[-1].text == "Should we expand?"


async def test_a_team_can_be_a_tool() -> None:
    team = RoundRobinTeam(
        [specialist("writer", "draft"), specialist("editor", "final text")], name="press"
    )
    boss_model = ScriptedModel(
        [
            Message.assistant(tool_calls=[tool_call("press", task="announce")]),
            answers_last_tool_result("published"),
        ]
    )
    result = await Assistant(boss_model, name="boss", tools=[AgentTool(team)]).result("go")
    assert result.output == "published: final text"


async def test_calls_of_one_turn_run_the_sub_agents_concurrently() -> None:
    barrier = asyncio.Barrier(2)

    class Rendezvous:
        name = "rendezvous"

        async def complete(self, request: ChatRequest) -> ChatResponse:
            await barrier.wait()
            return ChatResponse(Message.assistant("done"))

        def stream(self, request: ChatRequest) -> object:
            raise NotImplementedError

    a = Assistant(Rendezvous(), name="a")
    b = Assistant(Rendezvous(), name="b")
    boss = Assistant(
        ScriptedModel(
            [
                Message.assistant(tool_calls=[tool_call("a", task="x"), tool_call("b", task="y")]),
                "both done",
            ]
        ),
        tools=[AgentTool(a), AgentTool(b)],
    )
    result = await asyncio.wait_for(boss.result("go"), 5)
    assert result.output == "both done"


async def test_the_observer_sees_the_sub_agents_events() -> None:
    seen: list[Event] = []
    tool = AgentTool(specialist("helper", "ok"), on_event=seen.append)
    await tool.invoke({"task": "x"})
    assert isinstance(seen[-1], RunResult)
    assert seen[-1].agent == "helper"


async def test_a_failing_sub_agent_is_reported_to_the_caller_as_a_tool_error() -> None:
    broken = Assistant(ScriptedModel([RuntimeError("model down")]), name="broken")
    boss = Assistant(
        ScriptedModel(
            [Message.assistant(tool_calls=[tool_call("broken", task="x")]), "fallback answer"]
        ),
        tools=[AgentTool(broken)],
    )
    events = [event async for event in boss.run("go")]
    [result] = [e.result for e in events if isinstance(e, ToolResultEvent)]
    assert result.is_error
    assert "model down" in result.content
    assert isinstance(events[-1], RunResult)
    assert events[-1].output == "fallback answer"


def test_agent_names_that_are_not_valid_tool_names_are_cleaned() -> None:
    agent = specialist("x", "y")
    agent.name = "market analyst"
    assert AgentTool(agent).name == "market_analyst"
