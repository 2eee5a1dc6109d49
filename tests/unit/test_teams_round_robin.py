"""RoundRobinTeam: members speak in order, see each other, and the team is an Agent."""

from __future__ import annotations

import pytest

from agentguild import (
    Agent,
    Assistant,
    Message,
    MessageEvent,
    RunResult,
    TextDelta,
    ToolCallEvent,
    tool,
)
from agentguild.agents.teams import RoundRobinTeam, TeamState
from agentguild.agents.termination import MaxMessages
from agentguild.llm import ChatRequest, ScriptedModel, tool_call
from agentguild.types import Event, SpeakerSelected


def member(name: str) -> Assistant:
    """A member answering '<name> saw <n> messages'."""

    def reply(request: ChatRequest) -> str:
        return f"{name} saw {len(request.messages)} messages"

    return Assistant(ScriptedModel([reply], cycle=True), name=name)


async def collect(team: RoundRobinTeam, *args: object, **kwargs: object) -> list[Event]:
    return [event async for event in team.run(*args, **kwargs)]  # type: ignore[arg-type]


async def test_without_limits_each_member_speaks_once_in_order() -> None:
    team = RoundRobinTeam([member("researcher"), member("writer"), member("reviewer")])
    events = await collect(team, "write about owls")
    chosen = [e.speakers for e in events if isinstance(e, SpeakerSelected)]
    assert chosen == [("researcher",), ("writer",), ("reviewer",)]
    result = events[-1]
    assert isinstance(result, RunResult)
    assert [m.name for m in result.messages] == ["researcher", "writer", "reviewer"]
    assert result.output == "reviewer saw 3 messages"
    assert result.agent == "round_robin"


async def test_events_name_the_member_who_produced_them() -> None:
    team = RoundRobinTeam([member("a"), member("b")])
    events = await collect(team, "hi")
    speakers = [e.agent for e in events if isinstance(e, MessageEvent)]
    assert speakers == ["a", "b"]


async def test_members_see_others_as_named_users_and_themselves_as_assistant() -> None:
    model_a = ScriptedModel(["first from a", "second from a"])
    a = Assistant(model_a, name="a", system_prompt="You are A.")
    team = RoundRobinTeam([a, member("b")], max_turns=3)
    await collect(team, "topic")
    seen = model_a.requests[1].messages
    assert [(m.role, m.name, m.text) for m in seen] == [
        ("system", None, "You are A."),
        ("user", None, "topic"),
        ("assistant", "a", "first from a"),
        ("user", "b", "b saw 2 messages"),
    ]


async def test_tool_traffic_stays_inside_the_member_that_made_it() -> None:
    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return f"found {q}"

    model = ScriptedModel([Message.assistant(tool_calls=[tool_call("lookup", q="owls")]), "owls"])
    researcher = Assistant(model, name="researcher", tools=[lookup])
    writer = member("writer")
    team = RoundRobinTeam([researcher, writer])
    events = await collect(team, "owls?")
    assert any(isinstance(e, ToolCallEvent) for e in events)
    result = events[-1]
    assert isinstance(result, RunResult)
    assert [(m.name, m.text) for m in result.messages] == [
        ("researcher", "owls"),
        ("writer", "writer saw 2 messages"),
    ]


async def test_the_rotation_continues_across_runs_on_one_state() -> None:
    team = RoundRobinTeam([member("a"), member("b"), member("c")], termination=MaxMessages(2))
    state = TeamState()
    await collect(team, "one", state=state)
    events = await collect(team, "two", state=state)
    chosen = [e.speakers[0] for e in events if isinstance(e, SpeakerSelected)]
    assert chosen == ["c", "a"]


async def test_a_team_is_an_agent_and_can_be_a_member_of_another_team() -> None:
    inner = RoundRobinTeam([member("x"), member("y")], name="inner")
    outer = RoundRobinTeam([member("lead"), inner], name="outer")
    assert isinstance(inner, Agent)
    events = await collect(outer, "plan")
    result = events[-1]
    assert isinstance(result, RunResult)
    assert [m.name for m in result.messages] == ["lead", "inner"]
    assert result.output == "y saw 3 messages"
    # only the outer team's RunResult reaches the outer stream
    assert [e.agent for e in events if isinstance(e, RunResult)] == ["outer"]


def test_member_names_must_be_unique_and_valid() -> None:
    with pytest.raises(ValueError, match="unique"):
        RoundRobinTeam([member("a"), member("a")])
    with pytest.raises(ValueError, match="invalid"):
        RoundRobinTeam([member("bad name")])
    with pytest.raises(ValueError, match="at least one"):
        RoundRobinTeam([])


async def test_a_run_needs_messages() -> None:
    with pytest.raises(ValueError, match="needs messages"):
        await RoundRobinTeam([member("a")]).result()


async def test_stream_is_passed_on_so_members_text_arrives_as_deltas() -> None:
    team = RoundRobinTeam([member("a"), member("b")])
    events = [event async for event in team.run("hi", stream=True)]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert {e.agent for e in deltas} == {"a", "b"}
    assert "".join(e.text for e in deltas if e.agent == "a") == "a saw 1 messages"
