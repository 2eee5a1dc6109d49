"""OpenAICompatModel against the fake OpenAI-compatible server: shapes, streaming, errors."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from agentguild import (
    Assistant,
    AuthenticationError,
    ContextLengthError,
    MalformedResponseError,
    Message,
    ModelConnectionError,
    ModelError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
    TextDelta,
    ToolResultEvent,
    tool,
)
from agentguild.llm import ChatRequest, ChunkAccumulator, OpenAICompatModel
from agentguild.testing import (
    DropConnection,
    ErrorReply,
    FakeLLMServer,
    FakeToolCall,
    Hang,
    MalformedReply,
    Reply,
)
from agentguild.types import ToolSpec

ADD = ToolSpec(
    "add",
    "Add two numbers.",
    {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
)


def ask(text: str = "hi", **options: object) -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)], **options)  # type: ignore[arg-type]


async def test_complete_returns_text_usage_and_sends_the_openai_body(
    fake_llm: FakeLLMServer, fake_llm_model: OpenAICompatModel
) -> None:
    fake_llm.script(Reply("Hello!", prompt_tokens=7, completion_tokens=2))
    response = await fake_llm_model.complete(
        ask("hi", tools=[ADD], tool_choice="add", temperature=0, max_tokens=20, seed=1)
    )
    assert response.message.text == "Hello!"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (7, 2)
    assert response.finish_reason == "stop"
    body = fake_llm.requests[0]
    assert body["model"] == "fake-model"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["tools"][0]["function"]["name"] == "add"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0, 20, 1)
    assert "stream" not in body


async def test_stream_yields_text_pieces_and_final_usage(
    fake_llm: FakeLLMServer, fake_llm_model: OpenAICompatModel
) -> None:
    fake_llm.script(Reply("one two three four", completion_tokens=4))
    chunks = [chunk async for chunk in fake_llm_model.stream(ask())]
    accumulator = ChunkAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    response = accumulator.response()
    assert len([c for c in chunks if c.text]) > 1
    assert response.message.text == "one two three four"
    assert response.usage.completion_tokens == 4
    assert fake_llm.requests[0]["stream_options"] == {"include_usage": True}


async def test_streamed_parallel_tool_calls_are_reassembled(
    fake_llm: FakeLLMServer, fake_llm_model: OpenAICompatModel
) -> None:
    fake_llm.script(
        Reply(tool_calls=[FakeToolCall("add", {"a": 1, "b": 2}), FakeToolCall("add", {"a": 3})])
    )
    accumulator = ChunkAccumulator()
    async for chunk in fake_llm_model.stream(ask(tools=[ADD])):
        accumulator.add(chunk)
    response = accumulator.response()
    calls = response.message.tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("add", '{"a":1,"b":2}'),
        ("add", '{"a":3}'),
    ]
    assert calls[0].id != calls[1].id
    assert response.finish_reason == "tool_calls"


async def test_connections_are_pooled_and_reused_across_calls(
    fake_llm: FakeLLMServer, fake_llm_model: OpenAICompatModel
) -> None:
    for _ in range(5):
        await fake_llm_model.complete(ask())
    async for _ in fake_llm_model.stream(ask()):
        pass
    to_server = [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == fake_llm.port
    ]
    assert len(to_server) == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        (ErrorReply.rate_limited(2.5), RateLimitError),
        (ErrorReply.server_error(500), ServerError),
        (ErrorReply.server_error(503), ServerError),
        (ErrorReply.unauthorized(), AuthenticationError),
        (ErrorReply.context_length_exceeded(), ContextLengthError),
        (ErrorReply.bad_request("bad 'temperature'"), ModelError),
        (MalformedReply(), MalformedResponseError),
        (DropConnection(), ModelConnectionError),
        (Hang(), ModelTimeoutError),
    ],
)
async def test_injected_failures_surface_as_typed_errors(
    fake_llm: FakeLLMServer, failure: object, error_type: type[ModelError], stream: bool
) -> None:
    fake_llm.script(failure)  # type: ignore[arg-type]

    async def call(model: OpenAICompatModel) -> None:
        if stream:
            async for _ in model.stream(ask()):
                pass
        else:
            await model.complete(ask())

    async with OpenAICompatModel("fake-model", base_url=fake_llm.base_url, timeout=2.0) as model:
        with pytest.raises(error_type) as raised:
            await call(model)
    if error_type is RateLimitError:
        assert isinstance(raised.value, RateLimitError)
        assert raised.value.retry_after == 2.5
    if error_type is ContextLengthError:
        assert "maximum context length" in str(raised.value)


async def test_non_json_server_address_gives_connection_error() -> None:
    model = OpenAICompatModel("m", base_url="http://127.0.0.1:9/v1", connect_timeout=1)
    with pytest.raises(ModelConnectionError, match="could not talk to"):
        await model.complete(ask())
    await model.aclose()


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.fake_llm(mode="tool-loop")
async def test_assistant_round_trip_through_the_fake_server(
    fake_llm_model: OpenAICompatModel, stream: bool
) -> None:
    agent = Assistant(fake_llm_model, tools=[add])
    events = [event async for event in agent.run("What is 2 + 3?", stream=stream)]
    result = events[-1]
    assert result.output == "The result is 5.0."  # type: ignore[union-attr]
    assert any(isinstance(e, ToolResultEvent) and e.result.content == "5.0" for e in events)
    assert any(isinstance(e, TextDelta) for e in events) == stream


@pytest.mark.parametrize("stream", [False, True])
async def test_parallel_tool_calls_from_the_server_execute_concurrently(
    fake_llm: FakeLLMServer, fake_llm_model: OpenAICompatModel, stream: bool
) -> None:
    # Given two tools that each wait for the other to have started
    left_started, right_started = asyncio.Event(), asyncio.Event()

    @tool
    async def left() -> str:
        """Left."""
        left_started.set()
        await right_started.wait()
        return "L"

    @tool
    async def right() -> str:
        """Right."""
        right_started.set()
        await left_started.wait()
        return "R"

    fake_llm.script(
        Reply(tool_calls=[FakeToolCall("left"), FakeToolCall("right")]), Reply("both done")
    )
    agent = Assistant(fake_llm_model, tools=[left, right], tool_timeout_s=5)
    # When the model asks for both in one turn
    result = await agent.result("go", stream=stream)
    # Then both ran at once (one at a time, each would time out) and the run completed
    assert [m.text for m in result.messages if m.role == "tool"] == ["L", "R"]
    assert result.output == "both done"
    assert fake_llm.requests[1]["messages"][-1]["content"] == "R"
