"""RouterAgent: one routing decision, then only the chosen specialist answers."""

from __future__ import annotations

import pytest

from agentguild import Assistant, MessageEvent, RunResult
from agentguild.agents.teams import RouterAgent
from agentguild.llm import ScriptedModel
from agentguild.types import Event, SpeakerSelected


def specialist(name: str, description: str) -> Assistant:
    return Assistant(
        ScriptedModel([f"{name} answers"], cycle=True), name=name, description=description
    )


def desk() -> list[Assistant]:
    return [
        specialist("billing", "invoices, refunds and payments"),
        specialist("tech", "bugs, errors and outages"),
    ]


async def collect(router: RouterAgent, text: str) -> list[Event]:
    return [event async for event in router.run(text)]


async def test_the_chosen_specialist_answers_and_no_one_else() -> None:
    routing = ScriptedModel(["tech"])
    router = RouterAgent(desk(), routing)
    events = await collect(router, "The app crashes on start")
    assert [(e.speakers, e.reason) for e in events if isinstance(e, SpeakerSelected)] == [
        (("tech",), "router")
    ]
    assert {e.agent for e in events if isinstance(e, MessageEvent)} == {"tech"}
    result = events[-1]
    assert isinstance(result, RunResult)
    assert (result.agent, result.output, result.turns) == ("router", "tech answers", 1)
    assert "- billing: invoices, refunds and payments" in routing.requests[0].messages[0].text


async def test_one_router_instance_routes_each_request_on_its_own() -> None:
    router = RouterAgent(desk(), ScriptedModel(["billing", "tech"]))
    first = await router.result("Refund my last invoice")
    second = await router.result("Error 500 everywhere")
    assert (first.output, second.output) == ("billing answers", "tech answers")


async def test_an_unclear_routing_answer_goes_to_the_default() -> None:
    router = RouterAgent(desk(), ScriptedModel(["no idea"]), default="tech")
    result = await router.result("hello")
    assert result.output == "tech answers"


async def test_a_mention_routes_without_asking_the_model() -> None:
    routing = ScriptedModel([])
    result = await RouterAgent(desk(), routing).result("@billing where is my money")
    assert result.output == "billing answers"
    assert routing.requests == []


def test_the_default_must_be_a_specialist() -> None:
    with pytest.raises(ValueError, match="default"):
        RouterAgent(desk(), ScriptedModel([]), default="sales")
