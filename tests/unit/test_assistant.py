"""Assistant: the function-calling loop, streaming, limits, concurrency, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from agentguild import (
    Assistant,
    ErrorEvent,
    Event,
    Message,
    MessageEvent,
    RateLimitError,
    RunResult,
    TextDelta,
    ToolResultEvent,
    UsageEvent,
    tool,
)
from agentguild.llm import ChatRequest, ScriptedModel, tool_call


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


async def collect(agent: Assistant, prompt: str, **kwargs: bool) -> list[Event]:
    return [event async for event in agent.run(prompt, **kwargs)]


async def test_plain_answer_ends_the_run_after_one_turn() -> None:
    agent = Assistant(ScriptedModel(["Hello there!"]))
    events = await collect(agent, "hi")
    assert [type(e) for e in events] == [UsageEvent, MessageEvent, RunResult]
    result = events[-1]
    assert isinstance(result, RunResult)
    assert (result.output, result.stop_reason, result.turns) == ("Hello there!", "completed", 1)


async def test_tool_call_result_reaches_the_model_and_the_final_answer() -> None:
    # Given a model that asks for add(2, 3) and then answers with what the tool said
    def answer(request: ChatRequest) -> str:
        return f"The sum is {request.messages[-1].text}."

    model = ScriptedModel([Message.assistant(tool_calls=[tool_call("add", a=2, b=3)]), answer])
    agent = Assistant(model, system_prompt="Be brief.", tools=[add])
    # When it runs
    events = await collect(agent, "What is 2 + 3?")
    # Then the tool ran, its result went back to the model, and reached the answer
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "UsageEvent", "MessageEvent", "ToolCallEvent", "ToolResultEvent", "MessageEvent",
        "UsageEvent", "MessageEvent", "RunResult",
    ]  # fmt: skip
    tool_result = next(e for e in events if isinstance(e, ToolResultEvent)).result
    assert (tool_result.content, tool_result.is_error) == ("5.0", False)
    assert [m.role for m in model.requests[1].messages] == ["system", "user", "assistant", "tool"]
    assert model.requests[0].tools[0].name == "add"
    result = events[-1]
    assert isinstance(result, RunResult)
    assert result.output == "The sum is 5.0."
    assert [m.role for m in result.messages] == ["assistant", "tool", "assistant"]
    assert result.usage.total_tokens > 0


async def test_streaming_yields_text_deltas_that_add_up_to_the_reply() -> None:
    agent = Assistant(ScriptedModel(["one two three"]), stream=True)
    events = await collect(agent, "count")
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 3
    assert "".join(deltas) == "one two three"
    assert isinstance(events[-1], RunResult)
    assert events[-1].output == "one two three"


async def test_streamed_tool_calls_are_assembled_and_executed() -> None:
    model = ScriptedModel([Message.assistant(tool_calls=[tool_call("add", a=1, b=1)]), "2"])
    events = await collect(Assistant(model, tools=[add]), "1+1?", stream=True)
    (result_event,) = [e for e in events if isinstance(e, ToolResultEvent)]
    assert result_event.result.content == "2.0"


async def test_max_turns_bounds_a_model_that_keeps_calling_tools() -> None:
    model = ScriptedModel(
        [lambda _: Message.assistant(tool_calls=[tool_call("add", a=1, b=1)])], cycle=True
    )
    result = await Assistant(model, tools=[add], max_turns=3).result("loop forever")
    assert (result.stop_reason, result.turns, len(model.requests)) == ("max_turns", 3, 3)


async def test_parallel_tool_calls_of_one_turn_run_concurrently() -> None:
    ping_started, pong_started = asyncio.Event(), asyncio.Event()

    @tool
    async def ping() -> str:
        """Needs pong running."""
        ping_started.set()
        await pong_started.wait()
        return "ping"

    @tool
    async def pong() -> str:
        """Needs ping running."""
        pong_started.set()
        await ping_started.wait()
        return "pong"

    model = ScriptedModel(
        [Message.assistant(tool_calls=[tool_call("ping"), tool_call("pong")]), "done"]
    )
    agent = Assistant(model, tools=[ping, pong], tool_timeout_s=5)
    result = await agent.result("go")
    assert [m.text for m in result.messages if m.role == "tool"] == ["ping", "pong"]


async def test_failing_tool_is_reported_to_the_model_and_the_run_continues() -> None:
    @tool
    def broken() -> str:
        """Always fails."""
        raise ValueError("disk on fire")

    model = ScriptedModel(
        [
            Message.assistant(tool_calls=[tool_call("broken")]),
            lambda r: f"saw: {r.messages[-1].text}",
        ]
    )
    result = await Assistant(model, tools=[broken]).result("try it")
    assert result.stop_reason == "completed"
    assert result.output == "saw: Error: broken failed: ValueError: disk on fire"


async def test_one_instance_runs_concurrently_with_independent_transcripts() -> None:
    # Given one assistant whose model echoes the user after a scheduling point
    def echo(request: ChatRequest) -> str:
        return f"echo: {request.messages[-1].text}"

    agent = Assistant(ScriptedModel([echo], cycle=True, delay_s=0.001))
    # When many runs overlap
    results = await asyncio.gather(*(agent.result(f"message {i}") for i in range(20)))
    # Then each transcript holds only its own exchange
    assert [r.output for r in results] == [f"echo: message {i}" for i in range(20)]
    assert all(len(r.messages) == 1 for r in results)


async def test_cancelling_a_run_cancels_its_running_tools() -> None:
    started, cancelled, never = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @tool
    async def slow() -> str:
        """Waits forever."""
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "unreachable"

    model = ScriptedModel([Message.assistant(tool_calls=[tool_call("slow")])])
    task = asyncio.create_task(Assistant(model, tools=[slow]).result("go"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_model_failure_yields_error_event_then_raises_the_typed_error() -> None:
    agent = Assistant(ScriptedModel([RateLimitError("slow down", retry_after=2.0)]))
    events: list[Event] = []

    async def consume() -> None:
        async for event in agent.run("hi"):
            events.append(event)

    with pytest.raises(RateLimitError) as raised:
        await consume()
    assert raised.value.retry_after == 2.0
    assert events == [ErrorEvent("RateLimitError", "slow down", "assistant")]


async def test_system_prompt_is_added_once_and_existing_conversation_is_kept() -> None:
    model = ScriptedModel(["ok"])
    history = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"},
               {"role": "user", "content": "second"}]  # fmt: skip
    await Assistant(model, system_prompt="Be kind.").result(history)
    sent = model.requests[0].messages
    assert [(m.role, m.text) for m in sent] == [
        ("system", "Be kind."), ("user", "first"), ("assistant", "reply"), ("user", "second"),
    ]  # fmt: skip


def test_unknown_model_parameters_are_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown model parameter"):
        Assistant(ScriptedModel([]), model_params={"temprature": 0})


def test_run_sync_returns_the_result_from_synchronous_code() -> None:
    agent = Assistant(ScriptedModel(["sync works"]), model_params={"temperature": 0})
    assert agent.run_sync("hi").output == "sync works"
