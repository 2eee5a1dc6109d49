"""LocalModel on the bundled SmolLM2-135M-Instruct: real inference, fully offline.

Skipped with a message when llama-cpp-python or the bundled model is missing, except under
`CI=true`, where that fails: CI must prove the local model works.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
from collections.abc import Iterator
from contextlib import aclosing
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from agentguild import (
    BadRequestError,
    ConfigError,
    ContextLengthError,
    Message,
    ModelError,
    ToolSpec,
)
from agentguild.llm import ChatChunk, ChatRequest, ChunkAccumulator
from agentguild.llm._local_engine import Emit, Engine
from agentguild.llm.local import LocalModel

pytestmark = pytest.mark.integration

ADD = ToolSpec(
    "add",
    "Add two numbers a and b.",
    {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)
CALCULATE = ToolSpec(
    "calculate",
    "Evaluate an arithmetic expression.",
    {
        "type": "object",
        "properties": {
            "expression": {"type": "string", "minLength": 1},
            "precision": {"type": "integer"},
            "mode": {"enum": ["exact", "approximate"]},
        },
        "required": ["expression", "mode"],
    },
)


class AddArguments(BaseModel):
    """The ADD schema, as a validator: exactly the two numbers, nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True)
    a: float
    b: float


class CalculateArguments(BaseModel):
    """The CALCULATE schema, as a validator."""

    model_config = ConfigDict(extra="forbid", strict=True)
    expression: str = Field(min_length=1)
    precision: int | None = None
    mode: Literal["exact", "approximate"]


def _require_local_model() -> None:
    problem = None
    if importlib.util.find_spec("llama_cpp") is None:
        problem = "llama-cpp-python is not installed"
    else:
        try:
            LocalModel.default_model_path()
        except ConfigError as exc:
            problem = str(exc)
    if problem is None:
        return
    message = f"local model unavailable: {problem}; pip install 'agentguild[local]'"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def model() -> Iterator[LocalModel]:
    """One loaded SmolLM2 for the whole module (loading takes under a second)."""
    _require_local_model()
    local = LocalModel(max_tokens=32)
    yield local
    asyncio.run(local.aclose())


def ask(text: str, **options: object) -> ChatRequest:
    return ChatRequest([Message.user(text)], **options)  # type: ignore[arg-type]


async def test_answers_a_plain_question(model: LocalModel) -> None:
    response = await model.complete(ask("What is the capital of France?", max_tokens=24))

    assert response.message.text.strip()
    assert response.message.tool_calls == ()
    assert response.finish_reason in ("stop", "length")
    assert response.usage.prompt_tokens > 10
    assert 0 < response.usage.completion_tokens <= 24
    assert response.model == "local"


async def test_streams_a_plain_answer_token_by_token(model: LocalModel) -> None:
    chunks = [c async for c in model.stream(ask("Name three colours.", max_tokens=24))]

    texts = [c.text for c in chunks if c.text]
    assert len(texts) >= 3
    assert "".join(texts).strip()
    final = chunks[-1]
    assert final.finish_reason in ("stop", "length")
    assert final.usage is not None
    assert final.usage.completion_tokens >= len(texts) - 1
    assert all(c.usage is None for c in chunks[:-1])


async def test_concurrent_calls_all_complete_without_blocking_the_loop(
    model: LocalModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an engine that, before emitting each token, waits for the event loop to run a
    # callback of its own: had inference run on the loop, that wait could never end
    loop = asyncio.get_running_loop()
    engine_threads: set[int] = set()
    round_trips = 0
    run = Engine.run

    def run_waiting_on_the_loop(
        engine: Engine, request: ChatRequest, emit: Emit, cancelled: threading.Event
    ) -> None:
        engine_threads.add(threading.get_ident())

        def emit_after_a_loop_round_trip(chunk: ChatChunk) -> None:
            nonlocal round_trips
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=60)
            round_trips += 1
            emit(chunk)

        run(engine, request, emit_after_a_loop_round_trip, cancelled)

    monkeypatch.setattr(Engine, "run", run_waiting_on_the_loop)
    questions = ["What is 2+2?", "Say hello.", "Name a fruit.", "What colour is the sky?"]
    # When four calls run at once
    responses = await asyncio.gather(*(model.complete(ask(q, max_tokens=16)) for q in questions))
    # Then all complete, their tokens emitted off the loop while the loop kept running
    assert all(r.message.text.strip() for r in responses)
    assert threading.get_ident() not in engine_threads
    assert round_trips >= len(questions)


@pytest.mark.parametrize(
    ("question", "seed"),
    [("What is 2 + 3?", 0), ("Add 17.5 and -4.", 1), ("What is one plus one?", 2)],
)
async def test_required_tool_call_arguments_validate_against_the_schema(
    model: LocalModel, question: str, seed: int
) -> None:
    request = ask(question, tools=[ADD], tool_choice="required", seed=seed, max_tokens=48)

    response = await model.complete(request)

    assert response.finish_reason == "tool_calls"
    assert response.message.content is None
    (call,) = response.message.tool_calls
    assert call.name == "add"
    assert call.id
    AddArguments.model_validate_json(call.arguments)


async def test_named_tool_choice_follows_a_richer_schema(model: LocalModel) -> None:
    request = ask(
        "Compute 3 * (4 + 5).", tools=[ADD, CALCULATE], tool_choice="calculate", max_tokens=64
    )

    response = await model.complete(request)

    (call,) = response.message.tool_calls
    assert call.name == "calculate"
    CalculateArguments.model_validate_json(call.arguments)


async def test_streamed_tool_call_arrives_as_deltas(model: LocalModel) -> None:
    request = ask("What is 2 + 3?", tools=[ADD], tool_choice="required", max_tokens=48)

    chunks = [c async for c in model.stream(request)]

    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0].id
    assert deltas[0].name == "add"
    assert len(deltas) > 2, "arguments stream as they are generated"
    assert all(d.index == 0 for d in deltas)
    arguments = "".join(d.arguments for d in deltas)
    AddArguments.model_validate(json.loads(arguments))
    assert chunks[-1].finish_reason == "tool_calls"


async def test_calculator_round_trip_ends_in_a_text_answer(model: LocalModel) -> None:
    question = Message.user("What is 2 + 3?")
    first = await model.complete(
        ChatRequest([question], tools=[ADD], tool_choice="required", max_tokens=48)
    )
    (call,) = first.message.tool_calls
    arguments = AddArguments.model_validate_json(call.arguments)
    result = Message.tool(call.id, str(arguments.a + arguments.b), name=call.name)

    second = await model.complete(
        ChatRequest([question, first.message, result], tools=[ADD], max_tokens=24)
    )

    assert second.message.tool_calls == ()
    assert second.finish_reason in ("stop", "length")
    assert second.message.text.strip()


ENDLESS_MAX_TOKENS = 3500


def _endless_request() -> ChatRequest:
    """A request whose grammar forbids ending before ~3000 tokens (tens of seconds)."""
    story = {"type": "string", "minLength": 12000}
    return ask(
        "Tell me a very long story.",
        max_tokens=ENDLESS_MAX_TOKENS,
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": story}},
    )


class EmittedTokens:
    """How many chunks the engine has emitted for endless requests (from its thread)."""

    count = 0


@pytest.fixture
def endless_emits(monkeypatch: pytest.MonkeyPatch) -> EmittedTokens:
    emitted = EmittedTokens()
    run = Engine.run

    def run_counting(
        engine: Engine, request: ChatRequest, emit: Emit, cancelled: threading.Event
    ) -> None:
        if request.max_tokens != ENDLESS_MAX_TOKENS:
            return run(engine, request, emit, cancelled)

        def counted(chunk: ChatChunk) -> None:
            emitted.count += 1
            emit(chunk)

        return run(engine, request, counted, cancelled)

    monkeypatch.setattr(Engine, "run", run_counting)
    return emitted


async def _next_caller_is_answered_once_generation_stopped(
    model: LocalModel, endless: EmittedTokens
) -> None:
    """The next call is answered (it waits for the engine), and the endless generation,
    left by its consumer, stopped within a token or two: not ~3000 tokens later."""
    left_at = endless.count
    response = await model.complete(ask("Say hi.", max_tokens=8))
    assert response.message.text.strip()
    assert endless.count - left_at <= 2


async def test_cancelling_the_consumer_frees_the_model_for_the_next_caller(
    model: LocalModel, endless_emits: EmittedTokens
) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in model.stream(_endless_request()):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await _next_caller_is_answered_once_generation_stopped(model, endless_emits)


async def test_closing_a_stream_early_frees_the_model_for_the_next_caller(
    model: LocalModel, endless_emits: EmittedTokens
) -> None:
    received: list[ChatChunk] = []
    async with aclosing(model.stream(_endless_request())) as stream:
        async for chunk in stream:
            received.append(chunk)
            if len(received) == 3:
                break

    assert len(received) == 3
    await _next_caller_is_answered_once_generation_stopped(model, endless_emits)


async def test_prompt_longer_than_the_context_is_a_context_length_error(
    model: LocalModel,
) -> None:
    with pytest.raises(ContextLengthError, match="context window of 4096 tokens"):
        await model.complete(ask("word " * 5000))


async def test_max_tokens_beyond_the_context_is_a_context_length_error(
    model: LocalModel,
) -> None:
    with pytest.raises(ContextLengthError, match="max_tokens 5000"):
        await model.complete(ask("Hi", max_tokens=5000))


async def test_json_object_response_format_yields_json(model: LocalModel) -> None:
    request = ask("Describe a cat as JSON.", response_format={"type": "json_object"}, max_tokens=64)

    accumulator = ChunkAccumulator()
    async for chunk in model.stream(request):
        accumulator.add(chunk)
    response = accumulator.response()

    assert response.message.text.startswith("{")
    if response.finish_reason == "stop":
        assert isinstance(json.loads(response.message.text), dict)


async def test_assistant_with_the_calculator_runs_to_completion_offline(
    model: LocalModel,
) -> None:
    from agentguild import Assistant
    from agentguild.tools.builtin.calculator import calculator

    assistant = Assistant(model, tools=[calculator], model_params={"max_tokens": 48})

    result = await assistant.result("What is 12 * (3 + 4)?")

    assert result.stop_reason == "completed"
    assert result.turns <= 2, "a tool is offered once per user turn, then the model answers"
    assert result.output.strip()


async def test_unknown_tool_choice_is_a_bad_request(model: LocalModel) -> None:
    with pytest.raises(BadRequestError, match="offered tools: add"):
        await model.complete(ask("2+3?", tools=[ADD], tool_choice="multiply"))


async def test_arguments_cut_off_by_max_tokens_are_an_error_not_a_broken_call(
    model: LocalModel,
) -> None:
    request = ask("What is 2 + 3?", tools=[ADD], tool_choice="required", max_tokens=3)

    with pytest.raises(ModelError, match="ran out of tokens"):
        await model.complete(request)


async def test_a_schema_the_grammar_cannot_express_is_a_bad_request(model: LocalModel) -> None:
    odd = ToolSpec("odd", "Odd tool.", {"type": "object", "properties": {"x": {"type": "cplx"}}})

    with pytest.raises(BadRequestError, match="tool 'odd'"):
        await model.complete(ask("Hi", tools=[ADD, odd]))
