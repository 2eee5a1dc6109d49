"""Termination conditions: each condition, composition with | and &, progress, and in teams."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agentguild import Assistant, Message, MessageEvent, RunResult, Usage, UsageEvent
from agentguild.agents.teams import RoundRobinTeam, TeamState
from agentguild.agents.termination import (
    AllOf,
    AnyOf,
    ExternalStop,
    HandoffTermination,
    MaxMessages,
    TextMention,
    Timeout,
    TokenBudget,
)
from agentguild.llm import ChatRequest, ChatResponse, ScriptedModel
from agentguild.types import Event, HandoffEvent, TerminationEvent


def said(text: str, agent: str = "a") -> MessageEvent:
    return MessageEvent(Message.assistant(text, name=agent), agent)


def spent(tokens: int) -> UsageEvent:
    return UsageEvent(Usage(tokens, 0), "m", "a")


def talker(name: str, text: str | None = None) -> Assistant:
    reply = text if text is not None else f"{name} speaking"
    return Assistant(ScriptedModel([reply], cycle=True), name=name)


class BlockingModel:
    """A model whose calls never return; `called` is set once one is waiting."""

    name = "blocking"

    def __init__(self) -> None:
        self.called = asyncio.Event()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.called.set()
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")

    def stream(self, request: ChatRequest) -> object:
        raise NotImplementedError


async def collect(events: object) -> list[Event]:
    return [event async for event in events]  # type: ignore[attr-defined]


# ---- the conditions on their own ---------------------------------------------------------


def test_max_messages_fires_at_the_count() -> None:
    state = MaxMessages(2).start()
    state.observe(said("one"))
    assert state.fired is None
    state.observe(said("two"))
    assert state.fired is not None
    assert "2 messages" in state.fired.reason


def test_text_mention_fires_only_for_the_named_sources() -> None:
    state = TextMention("APPROVE", sources=["reviewer"]).start()
    state.observe(said("I APPROVE", agent="writer"))
    assert state.fired is None
    state.observe(said("APPROVE", agent="reviewer"))
    assert state.fired is not None
    assert state.fired.reason == "reviewer said 'APPROVE'"


def test_token_budget_counts_prompt_and_completion_tokens() -> None:
    state = TokenBudget(100).start()
    state.observe(UsageEvent(Usage(40, 20), "m", "a"))
    assert state.fired is None
    state.observe(UsageEvent(Usage(30, 10), "m", "a"))
    assert state.fired is not None


def test_handoff_termination_fires_on_a_handoff_to_its_target() -> None:
    state = HandoffTermination().start()
    state.observe(HandoffEvent("triage", "billing", "swarm"))
    assert state.fired is None
    state.observe(HandoffEvent("billing", "user", "swarm"))
    assert state.fired is not None
    assert state.fired.reason == "billing handed off to user"


def test_or_fires_when_either_fires_and_and_when_both_have() -> None:
    either = (MaxMessages(3) | TextMention("DONE")).start()
    both = (MaxMessages(3) & TextMention("DONE")).start()
    for state in (either, both):
        state.observe(said("DONE"))
    assert either.fired is not None
    assert both.fired is None
    for _ in range(2):
        both.observe(said("more"))
    assert both.fired is not None
    assert " and " in both.fired.reason


def test_operators_flatten_into_one_composite() -> None:
    condition = MaxMessages(1) | TextMention("x") | TokenBudget(5)
    assert isinstance(condition, AnyOf)
    assert len(condition.conditions) == 3
    assert isinstance(MaxMessages(1) & TokenBudget(5) & TextMention("x"), AllOf)


def test_progress_resumes_a_fresh_state_where_the_old_one_was() -> None:
    condition = MaxMessages(3) | TokenBudget(100)
    first = condition.start()
    first.observe(said("one"))
    first.observe(said("two"))
    first.observe(spent(60))
    resumed = condition.start(first.progress())
    assert resumed.fired is None
    resumed.observe(said("three"))
    assert resumed.fired is not None


def test_each_start_is_independent_so_one_condition_serves_many_runs() -> None:
    condition = MaxMessages(1)
    used = condition.start()
    used.observe(said("x"))
    assert used.fired is not None
    assert condition.start().fired is None


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="count"):
        MaxMessages(0)
    with pytest.raises(ValueError, match="max_tokens"):
        TokenBudget(0)
    with pytest.raises(ValueError, match="seconds"):
        Timeout(0)
    with pytest.raises(ValueError, match="text"):
        TextMention("")


async def test_timeout_wait_returns_once_the_time_is_up() -> None:
    state = Timeout(0.01).start()
    await asyncio.wait_for(state.wait(), 5)
    assert state.fired is not None
    assert "timeout" in state.fired.reason


async def test_external_stop_wakes_waiters_and_reports_an_external_reason() -> None:
    handle = ExternalStop()
    state = handle.start()
    waiter = asyncio.ensure_future(state.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    handle.stop("user pressed stop")
    await asyncio.wait_for(waiter, 5)
    assert state.fired is not None
    assert (state.fired.reason, state.fired.external) == ("user pressed stop", True)


async def test_external_stop_can_be_called_from_another_thread() -> None:
    handle = ExternalStop()
    waiter = asyncio.ensure_future(handle.start().wait())
    await asyncio.sleep(0)
    thread = threading.Thread(target=handle.stop)
    thread.start()
    await asyncio.wait_for(waiter, 5)
    thread.join()
    assert handle.stopped


# ---- in a team ---------------------------------------------------------------------------


async def test_text_mention_ends_a_team_after_the_mentioning_turn() -> None:
    team = RoundRobinTeam(
        [talker("writer", "draft"), talker("reviewer", "APPROVE")],
        termination=TextMention("APPROVE"),
    )
    events = await collect(team.run("write"))
    result = events[-1]
    assert isinstance(result, RunResult)
    assert [m.name for m in result.messages] == ["writer", "reviewer"]
    assert (result.stop_reason, result.turns) == ("completed", 2)
    stops = [e for e in events if isinstance(e, TerminationEvent)]
    assert [e.reason for e in stops] == ["reviewer said 'APPROVE'"]


async def test_token_budget_ends_a_team_once_spent() -> None:
    fifty = ChatResponse(Message.assistant("some words"), Usage(30, 20))
    wordy = Assistant(ScriptedModel([fifty], cycle=True), name="wordy")
    team = RoundRobinTeam([wordy], termination=TokenBudget(120), max_turns=10)
    result = await team.result("talk")
    assert result.turns == 3  # 50, 100, 150 tokens
    assert result.usage.total_tokens == 150


async def test_timeout_interrupts_a_turn_in_progress() -> None:
    model = BlockingModel()
    team = RoundRobinTeam([Assistant(model, name="slow")], termination=Timeout(0.05))
    events = await asyncio.wait_for(collect(team.run("go")), 5)
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.turns == 0
    assert any(isinstance(e, TerminationEvent) and "timeout" in e.reason for e in events)


async def test_max_turns_caps_a_team_without_a_firing_condition() -> None:
    team = RoundRobinTeam([talker("a"), talker("b")], termination=TextMention("never"), max_turns=5)
    result = await team.result("go")
    assert (result.stop_reason, result.turns) == ("max_turns", 5)


async def test_a_new_run_on_the_same_state_starts_the_conditions_afresh() -> None:
    team = RoundRobinTeam([talker("a"), talker("b")], termination=MaxMessages(2))
    state = TeamState()
    first = await team.result("go", state=state)
    second = await team.result("again", state=state)
    assert (first.turns, second.turns) == (2, 2)
    assert [m.name for m in second.messages] == ["a", "b"]
