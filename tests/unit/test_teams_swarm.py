"""Swarm: handoffs with generated transfer tools, context carried over, user handoffs."""

from __future__ import annotations

import pytest

from agentguild import Assistant, Message, MessageEvent, RunResult
from agentguild.agents.teams import Swarm, TeamState
from agentguild.agents.termination import HandoffTermination
from agentguild.llm import ChatRequest, ScriptedModel, tool_call
from agentguild.types import Event, HandoffEvent, SpeakerSelected, TerminationEvent


def transfer(target: str, reason: str = "") -> Message:
    return Message.assistant(tool_calls=[tool_call(f"transfer_to_{target}", reason=reason)])


async def collect(swarm: Swarm, task: str, **kwargs: object) -> list[Event]:
    return [event async for event in swarm.run(task, **kwargs)]  # type: ignore[arg-type]


async def test_a_handoff_passes_the_conversation_to_the_target() -> None:
    triage_model = ScriptedModel([transfer("billing", "refund request")])
    billing_model = ScriptedModel(["Your refund is on its way."])
    swarm = Swarm(
        [Assistant(triage_model, name="triage"), Assistant(billing_model, name="billing")]
    )
    events = await collect(swarm, "I want a refund for order 42")
    handoffs = [e for e in events if isinstance(e, HandoffEvent)]
    assert [(h.source, h.target, h.message) for h in handoffs] == [
        ("triage", "billing", "refund request")
    ]
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.output == "Your refund is on its way."
    assert [m.name for m in result.messages] == ["triage", "billing"]
    # the target saw the whole conversation, including the user's request
    seen = [m.text for m in billing_model.requests[0].messages]
    assert "I want a refund for order 42" in seen
    # the handoff ended triage's turn: its model was not asked again after the transfer
    assert len(triage_model.requests) == 1


async def test_members_get_transfer_tools_for_their_allowed_targets_only() -> None:
    a = Assistant(ScriptedModel(["a answers"]), name="a")
    b = Assistant(ScriptedModel(["b"]), name="b")
    c = Assistant(ScriptedModel(["c"]), name="c")
    swarm = Swarm([a, b, c], handoffs={"a": ["b"]}, user_handoff=True)
    assert swarm.handoffs == {"a": ("b", "user"), "b": ("a", "c", "user"), "c": ("a", "b", "user")}
    await swarm.result("hi")
    offered = [spec.name for spec in a.model.requests[0].tools]  # type: ignore[attr-defined]
    assert offered == ["transfer_to_b", "transfer_to_user"]
    assert a.tools.names == []  # the member itself is not changed


async def test_a_member_answering_stays_active_for_the_next_run() -> None:
    triage = Assistant(ScriptedModel([transfer("sales")]), name="triage")
    sales = Assistant(ScriptedModel(["Which plan?", "Pro it is."]), name="sales")
    swarm = Swarm([triage, sales])
    state = TeamState()
    first = await swarm.result("I want to buy", state=state)
    events = await collect(swarm, "The pro plan", state=state)
    assert first.output == "Which plan?"
    assert [(e.speakers, e.reason) for e in events if isinstance(e, SpeakerSelected)] == [
        (("sales",), "active")
    ]
    assert isinstance(events[-1], RunResult)
    assert events[-1].output == "Pro it is."


async def test_a_handoff_to_the_user_ends_the_run_with_a_termination_reason() -> None:
    def ask_then_answer(request: ChatRequest) -> Message | str:
        if request.messages[-1].text == "yes":
            return "Cancelled your order."
        return Message.assistant("Are you sure?", tool_calls=[tool_call("transfer_to_user")])

    agent = Assistant(ScriptedModel([ask_then_answer], cycle=True), name="orders")
    swarm = Swarm([agent], user_handoff=True, termination=HandoffTermination())
    state = TeamState()
    events = await collect(swarm, "Cancel my order", state=state)
    assert [e.reason for e in events if isinstance(e, TerminationEvent)] == [
        "orders handed off to user"
    ]
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.output == "Are you sure?"
    resumed = await swarm.result("yes", state=state)
    assert resumed.output == "Cancelled your order."


async def test_a_failed_transfer_is_reported_to_the_model_which_may_go_on() -> None:
    bad = Message.assistant(tool_calls=[tool_call("transfer_to_b", reason=["not", "text"])])
    a_model = ScriptedModel([bad, "I will handle it myself."])
    swarm = Swarm([Assistant(a_model, name="a"), Assistant(ScriptedModel(["b"]), name="b")])
    events = await collect(swarm, "help")
    assert not [e for e in events if isinstance(e, HandoffEvent)]
    assert isinstance(events[-1], RunResult)
    assert events[-1].output == "I will handle it myself."
    assert {e.agent for e in events if isinstance(e, MessageEvent)} == {"a"}


async def test_handoff_chains_stop_at_max_turns() -> None:
    ping = Assistant(ScriptedModel([transfer("pong")], cycle=True), name="ping")
    pong = Assistant(ScriptedModel([transfer("ping")], cycle=True), name="pong")
    result = await Swarm([ping, pong], max_turns=4).result("go")
    assert (result.stop_reason, result.turns) == ("max_turns", 4)


def test_handoffs_must_name_members() -> None:
    a = Assistant(ScriptedModel([]), name="a")
    with pytest.raises(ValueError, match="non-members"):
        Swarm([a], handoffs={"a": ["ghost"]})
    with pytest.raises(ValueError, match="reserved"):
        Swarm([Assistant(ScriptedModel([]), name="user")])
