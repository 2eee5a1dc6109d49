"""SelectorTeam: a model picks the speaker; mentions, candidate filters, parallel speakers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from agentguild import Assistant, Message, MessageEvent, RunResult, UsageEvent
from agentguild.agents.teams import SelectorTeam
from agentguild.agents.termination import MaxMessages
from agentguild.llm import ChatRequest, ChatResponse, ScriptedModel
from agentguild.types import Event, SpeakerSelected


def member(name: str, description: str = "") -> Assistant:
    return Assistant(
        ScriptedModel([f"{name} here"], cycle=True), name=name, description=description
    )


def experts() -> list[Assistant]:
    return [
        member("researcher", "finds facts"),
        member("writer", "writes prose"),
        member("reviewer", "checks drafts"),
    ]


async def collect(team: SelectorTeam, task: str | list[Message]) -> list[Event]:
    return [event async for event in team.run(task)]


def chosen(events: list[Event]) -> list[tuple[tuple[str, ...], str]]:
    return [(e.speakers, e.reason) for e in events if isinstance(e, SpeakerSelected)]


async def test_the_model_picks_each_speaker_from_the_members_descriptions() -> None:
    selector = ScriptedModel(["writer", "The reviewer should go next."])
    team = SelectorTeam(experts(), selector, termination=MaxMessages(2))
    events = await collect(team, "Write a haiku")
    assert chosen(events) == [(("writer",), "selector"), (("reviewer",), "selector")]
    prompt = selector.requests[0].messages[0].text
    assert "- researcher: finds facts" in prompt
    assert "- writer: writes prose" in prompt
    question = selector.requests[1].messages[1].text
    assert "writer: writer here" in question  # the conversation so far


async def test_selector_calls_are_counted_and_attributed_to_the_team() -> None:
    selector = ScriptedModel(["writer"])
    team = SelectorTeam(experts(), selector, name="chat", termination=MaxMessages(1))
    events = await collect(team, "go")
    usage = [e for e in events if isinstance(e, UsageEvent)]
    assert [e.agent for e in usage] == ["chat", "writer"]
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.usage == usage[0].usage + usage[1].usage


async def test_an_at_mention_overrides_the_model() -> None:
    selector = ScriptedModel([])  # any call would fail
    team = SelectorTeam(experts(), selector, termination=MaxMessages(1))
    events = await collect(team, "@reviewer please look at this")
    assert chosen(events) == [(("reviewer",), "mention")]
    assert selector.requests == []


async def test_the_candidate_filter_narrows_who_may_speak() -> None:
    def after_writer_only_reviewer(transcript: Sequence[Message]) -> list[str]:
        if transcript[-1].name == "writer":
            return ["reviewer"]
        return ["researcher", "writer"]

    selector = ScriptedModel(["writer"])
    team = SelectorTeam(
        experts(), selector, candidates=after_writer_only_reviewer, termination=MaxMessages(2)
    )
    events = await collect(team, "go")
    assert chosen(events) == [(("writer",), "selector"), (("reviewer",), "candidates")]
    assert len(selector.requests) == 1
    assert "Choose from: researcher, writer." in selector.requests[0].messages[1].text


async def test_the_last_speaker_is_not_offered_again_unless_allowed() -> None:
    selector = ScriptedModel(["writer", "writer"])
    team = SelectorTeam(experts(), selector, termination=MaxMessages(2))
    await collect(team, "go")
    assert "Choose from: researcher, reviewer." in selector.requests[1].messages[1].text


async def test_an_answer_naming_nobody_falls_back_to_the_next_member() -> None:
    team = SelectorTeam(experts(), ScriptedModel(["hmm, hard to say"]), termination=MaxMessages(1))
    events = await collect(team, "go")
    [(speakers, reason)] = chosen(events)
    assert speakers == ("researcher",)
    assert reason.startswith("fallback")


class Rendezvous:
    """A model whose calls all wait until `parties` calls are in flight, then answer."""

    def __init__(self, parties: int, name: str) -> None:
        self.name = name
        self._barrier = asyncio.Barrier(parties)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await self._barrier.wait()
        return ChatResponse(Message.assistant(f"{self.name} done"))

    def stream(self, request: ChatRequest) -> object:
        raise NotImplementedError


async def test_several_named_speakers_run_in_parallel_when_allowed() -> None:
    # Given two members whose models only answer once both are called at the same time
    shared = Rendezvous(2, "both")
    alice = Assistant(shared, name="alice")
    bob = Assistant(shared, name="bob")
    carol = member("carol")
    team = SelectorTeam(
        [alice, bob, carol],
        ScriptedModel(["alice, bob"]),
        parallel=True,
        termination=MaxMessages(2),
    )
    # When the selector names two of them
    events = await asyncio.wait_for(collect(team, "go"), 5)
    # Then both spoke in one turn (sequential turns would never pass the rendezvous)
    assert chosen(events) == [(("alice", "bob"), "selector")]
    assert {e.agent for e in events if isinstance(e, MessageEvent)} == {"alice", "bob"}
    result = events[-1]
    assert isinstance(result, RunResult)
    assert [m.name for m in result.messages] == ["alice", "bob"]
    assert result.turns == 1


async def test_without_parallel_only_the_first_named_speaker_speaks() -> None:
    team = SelectorTeam(
        experts(), ScriptedModel(["reviewer and writer"]), termination=MaxMessages(1)
    )
    events = await collect(team, "go")
    assert chosen(events) == [(("reviewer",), "selector")]


def test_candidate_filter_naming_a_stranger_is_an_error() -> None:
    team = SelectorTeam(experts(), ScriptedModel([]), candidates=lambda _: ["ghost"])
    with pytest.raises(ValueError, match="non-members"):
        team._candidates([Message.user("x")])
