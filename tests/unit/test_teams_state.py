"""Team runs: concurrent runs of one instance, external stop, save and resume."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing

import pytest

from agentguild import Assistant, Message, MessageEvent, RunResult
from agentguild.agents.teams import (
    RoundRobinTeam,
    SelectorTeam,
    Swarm,
    TeamState,
    TeamStateError,
)
from agentguild.agents.termination import ExternalStop, MaxMessages
from agentguild.llm import ChatRequest, ChatResponse, ScriptedModel, tool_call
from agentguild.types import Event, SpeakerSelected, TerminationEvent


def member(name: str) -> Assistant:
    """Answers with its name, the task (the first user message) and the messages it saw."""

    def reply(request: ChatRequest) -> str:
        task = next(m.text for m in request.messages if m.role == "user")
        return f"{name} on {task!r} after {len(request.messages)}"

    return Assistant(ScriptedModel([reply], cycle=True), name=name)


def expert_team() -> RoundRobinTeam:
    return RoundRobinTeam(
        [member("researcher"), member("writer"), member("reviewer")], termination=MaxMessages(6)
    )


class Rendezvous:
    """A model answering like `member`, but only once `parties` calls are waiting."""

    def __init__(self, parties: int) -> None:
        self.name = "rendezvous"
        self._barrier = asyncio.Barrier(parties)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await self._barrier.wait()
        task = next(m.text for m in request.messages if m.role == "user")
        return ChatResponse(Message.assistant(f"on {task!r} after {len(request.messages)}"))

    def stream(self, request: ChatRequest) -> object:
        raise NotImplementedError


class Blocking:
    """A model that never answers; `called` is set when a call is waiting, `cancelled`
    once a waiting call was cancelled."""

    name = "blocking"

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.called.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")

    def stream(self, request: ChatRequest) -> object:
        raise NotImplementedError


async def test_two_concurrent_runs_of_one_team_keep_separate_transcripts() -> None:
    # Given one team whose members' model only answers when both runs call it at once
    model = Rendezvous(2)
    team = RoundRobinTeam(
        [Assistant(model, name="a"), Assistant(model, name="b")], termination=MaxMessages(4)
    )
    # When two runs go concurrently (in lockstep, so any shared state would mix them)
    cats, dogs = await asyncio.wait_for(asyncio.gather(team.result("cats"), team.result("dogs")), 5)
    # Then each transcript holds only its own task, in the right order
    expected = [f"on {{task!r}} after {n}" for n in (1, 2, 3, 4)]
    assert [m.text for m in cats.messages] == [e.format(task="cats") for e in expected]
    assert [m.text for m in dogs.messages] == [e.format(task="dogs") for e in expected]
    assert [m.name for m in cats.messages] == ["a", "b", "a", "b"]


async def test_one_state_cannot_serve_two_runs_at_once() -> None:
    model = Blocking()
    team = RoundRobinTeam([Assistant(model, name="a")])
    state = TeamState()
    running = asyncio.ensure_future(team.result("x", state=state))
    await model.called.wait()
    with pytest.raises(TeamStateError, match="already used"):
        await team.result("y", state=state)
    running.cancel()


async def test_an_external_stop_ends_a_running_team_promptly() -> None:
    # Given a team whose member is stuck in a model call that never returns
    model = Blocking()
    team = RoundRobinTeam([member("fast"), Assistant(model, name="stuck")], max_turns=5)
    stop = ExternalStop()
    events: list[Event] = []

    async def consume() -> None:
        async for event in team.run("go", stop=stop):
            events.append(event)

    run = asyncio.ensure_future(consume())
    # When it is stopped from another task while the member is waiting
    await model.called.wait()
    stop.stop("user pressed stop")
    await asyncio.wait_for(run, 5)
    # Then the run ended at once, as cancelled, with the stop's reason
    result = events[-1]
    assert isinstance(result, RunResult)
    assert (result.stop_reason, result.turns) == ("cancelled", 1)
    assert [e.reason for e in events if isinstance(e, TerminationEvent)] == ["user pressed stop"]


async def test_a_stop_before_the_run_starts_ends_it_before_any_turn() -> None:
    stop = ExternalStop()
    stop.stop()
    result = await expert_team().result("go", stop=stop)
    assert (result.stop_reason, result.turns) == ("cancelled", 0)


async def test_a_team_saved_mid_run_resumes_to_the_same_result() -> None:
    # Given the result of an uninterrupted run
    reference = await expert_team().result("owls")
    # When another run is abandoned after two member messages and its state saved as JSON
    state = TeamState()
    seen = 0
    async for event in expert_team().run("owls", state=state):
        if isinstance(event, MessageEvent):
            seen += 1
            if seen == 2:
                break
    saved = json.dumps(state.to_json())
    # and a fresh team (as in another process) resumes from it
    resumed_state = TeamState.from_json(json.loads(saved))
    result = await expert_team().result(state=resumed_state)
    # Then it ends exactly as the uninterrupted run did
    assert result.messages == reference.messages
    assert (result.turns, result.stop_reason) == (reference.turns, reference.stop_reason)
    assert resumed_state.transcript == [Message.user("owls"), *reference.messages]


async def test_a_stopped_run_resumes_from_its_state() -> None:
    reference = await expert_team().result("bats")
    state = TeamState()
    stop = ExternalStop()
    async for event in expert_team().run("bats", state=state, stop=stop):
        if isinstance(event, MessageEvent) and event.agent == "writer":
            stop.stop()
    assert state.running
    result = await expert_team().result(state=TeamState.loads(state.dumps()))
    assert result.messages == reference.messages


async def test_a_selection_made_before_the_save_is_not_asked_again() -> None:
    selector = ScriptedModel(["writer"])
    team = SelectorTeam([member("researcher"), member("writer")], selector, max_turns=1)
    state = TeamState()
    async for event in team.run("go", state=state):
        if isinstance(event, SpeakerSelected):
            break
    assert state.next_speakers == ["writer"]
    resumed = TeamState.loads(state.dumps())
    again = SelectorTeam([member("researcher"), member("writer")], ScriptedModel([]), max_turns=1)
    result = await again.result(state=resumed)
    assert [m.name for m in result.messages] == ["writer"]


async def test_a_member_error_leaves_the_state_resumable() -> None:
    flaky = ScriptedModel(["first", RuntimeError("boom")])
    team = RoundRobinTeam([Assistant(flaky, name="a"), member("b")], max_turns=3)
    state = TeamState()
    with pytest.raises(RuntimeError, match="boom"):
        await team.result("go", state=state)
    assert state.running
    assert state.run_turns == 2
    fixed = RoundRobinTeam(
        [Assistant(ScriptedModel(["second"]), name="a"), member("b")], max_turns=3
    )
    result = await fixed.result(state=state)
    assert [m.text for m in result.messages][0::2] == ["first", "second"]
    assert result.turns == 3


async def test_the_swarm_active_member_survives_serialisation() -> None:
    triage = Assistant(
        ScriptedModel([Message.assistant(tool_calls=[tool_call("transfer_to_sales")])]),
        name="triage",
    )
    swarm = Swarm([triage, member("sales")])
    state = TeamState()
    await swarm.result("buy", state=state)
    restored = TeamState.loads(state.dumps())
    assert restored.next_speakers == ["sales"]


def test_state_json_round_trips_and_rejects_garbage() -> None:
    state = TeamState(transcript=[Message.user("hi"), Message.assistant("yo", name="a")])
    state.team, state.turns, state.termination = "t", 1, {"any": [{"messages": 1}]}
    assert TeamState.loads(state.dumps()).to_json() == state.to_json()
    with pytest.raises(TeamStateError):
        TeamState.loads("[]")
    with pytest.raises(TeamStateError, match="version"):
        TeamState.from_json({**state.to_json(), "version": 99})
    with pytest.raises(TeamStateError):
        TeamState.from_json({**state.to_json(), "run_start": 7})


async def test_a_state_belongs_to_one_team() -> None:
    state = TeamState()
    await expert_team().result("x", state=state)
    other = RoundRobinTeam([member("a")], name="other")
    with pytest.raises(TeamStateError, match="belongs to team"):
        await other.result("y", state=state)


async def test_leaving_a_run_early_inside_aclosing_frees_its_state_at_once() -> None:
    team = RoundRobinTeam([Assistant(Blocking(), name="stuck")])
    state = TeamState()
    async with aclosing(team.run("go", state=state)) as events:
        async for event in events:
            if isinstance(event, SpeakerSelected):
                break
    # the state is free again at once, and resumes the turn that was about to start
    resumed = RoundRobinTeam([member("stuck")])
    result = await resumed.result(state=state)
    assert [m.name for m in result.messages] == ["stuck"]


async def test_cancelling_the_consumer_cancels_the_members_model_calls() -> None:
    model = Blocking()
    team = RoundRobinTeam([Assistant(model, name="stuck")])
    consumer = asyncio.ensure_future(team.result("go"))
    await model.called.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


async def test_leaving_a_run_mid_turn_cancels_the_members_still_working() -> None:
    # Given a turn where a fast and a stuck member speak in parallel
    model = Blocking()
    team = SelectorTeam(
        [member("fast"), Assistant(model, name="slow")],
        ScriptedModel(["fast, slow"]),
        parallel=True,
    )
    # When the consumer leaves after the fast member's message
    async with aclosing(team.run("go")) as events:
        async for event in events:
            if isinstance(event, MessageEvent) and event.agent == "fast":
                await model.called.wait()
                break
    # Then the stuck member's model call was cancelled by the time the run closed
    assert model.cancelled.is_set()
