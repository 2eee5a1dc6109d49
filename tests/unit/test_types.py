"""Messages convert to and from the OpenAI chat format without loss."""

from __future__ import annotations

from typing import Any

import pytest

from agentguild import ImagePart, Message, TextPart, ToolCall, ToolResult, Usage
from agentguild.llm import ChatChunk, ChunkAccumulator, ToolCallDelta

OPENAI_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi", "name": "ann"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,AAA", "detail": "low"},
            },
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}}
        ],
    },
    {"role": "tool", "content": "1", "tool_call_id": "c1"},
]


@pytest.mark.parametrize("data", OPENAI_MESSAGES)
def test_openai_messages_round_trip(data: dict[str, Any]) -> None:
    assert Message.from_openai(data).to_openai() == data


def test_multi_part_text_joins_text_parts_only() -> None:
    message = Message.user([TextPart("a"), ImagePart("http://x/y.png"), TextPart("b")])
    assert message.text == "ab"


def test_tool_result_becomes_a_tool_message_answering_its_call() -> None:
    call = ToolCall("c9", "add", "{}")
    message = ToolResult(call, "3").to_message()
    assert (message.role, message.tool_call_id, message.text) == ("tool", "c9", "3")


def test_usage_adds_up() -> None:
    total = Usage(1, 2) + Usage(10, 20)
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (11, 22, 33)


def test_accumulator_joins_text_and_tool_call_fragments_by_index() -> None:
    accumulator = ChunkAccumulator()
    for chunk in [
        ChatChunk(text="Let me "),
        ChatChunk(text="check."),
        ChatChunk(tool_calls=(ToolCallDelta(1, "b", "mul", '{"x"'),)),
        ChatChunk(tool_calls=(ToolCallDelta(0, "a", "add", "{}"),)),
        ChatChunk(tool_calls=(ToolCallDelta(1, arguments=": 2}"),)),
        ChatChunk(finish_reason="tool_calls", usage=Usage(5, 6)),
    ]:
        accumulator.add(chunk)
    response = accumulator.response()
    assert response.message.text == "Let me check."
    assert [(c.id, c.name, c.arguments) for c in response.message.tool_calls] == [
        ("a", "add", "{}"),
        ("b", "mul", '{"x": 2}'),
    ]
    assert (response.finish_reason, response.usage) == ("tool_calls", Usage(5, 6))
