"""The wire format of run events: exact JSON shapes, and lossless decoding."""

from __future__ import annotations

import pytest

from agentguild.runtime.event_codec import (
    RunCompleted,
    RunStarted,
    WireEvent,
    decode_event,
    encode_event,
)
from agentguild.server.sse import format_data, format_event
from agentguild.types import (
    ErrorEvent,
    Message,
    MessageEvent,
    RunResult,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    ToolResultEvent,
    Usage,
    UsageEvent,
)

CALL = ToolCall("call_1", "calculator", '{"expression": "2+3"}')


def test_each_event_encodes_to_the_documented_shape() -> None:
    assert encode_event(RunStarted("run_1", "conv_1", "helper")) == {
        "type": "run_started",
        "data": {"run_id": "run_1", "conversation_id": "conv_1", "agent": "helper"},
    }
    assert encode_event(TextDelta("Hel", "helper")) == {
        "type": "text_delta",
        "data": {"text": "Hel", "agent": "helper"},
    }
    assert encode_event(MessageEvent(Message.assistant("Hi"), "helper")) == {
        "type": "message",
        "data": {"message": {"role": "assistant", "content": "Hi"}, "agent": "helper"},
    }
    assert encode_event(ToolCallEvent(CALL, "helper")) == {
        "type": "tool_call",
        "data": {
            "call": {"id": "call_1", "name": "calculator", "arguments": '{"expression": "2+3"}'},
            "agent": "helper",
        },
    }
    assert encode_event(ToolResultEvent(ToolResult(CALL, "5", False, 0.0125), "helper")) == {
        "type": "tool_result",
        "data": {
            "call_id": "call_1",
            "name": "calculator",
            "content": "5",
            "is_error": False,
            "duration_ms": 12.5,
            "agent": "helper",
        },
    }
    assert encode_event(UsageEvent(Usage(10, 2), "fake", "helper")) == {
        "type": "usage",
        "data": {"prompt_tokens": 10, "completion_tokens": 2, "model": "fake", "agent": "helper"},
    }
    assert encode_event(ErrorEvent("ServerError", "boom", "helper")) == {
        "type": "error",
        "data": {"type": "ServerError", "message": "boom", "agent": "helper"},
    }


def test_run_completed_carries_status_output_usage_and_stop_reason() -> None:
    result = RunResult("helper", (Message.assistant("Done."),), Usage(7, 3), "completed", 1)

    encoded = encode_event(RunCompleted.from_result("run_1", "completed", result))

    assert encoded == {
        "type": "run_completed",
        "data": {
            "run_id": "run_1",
            "status": "completed",
            "output": "Done.",
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
            "stop_reason": "completed",
        },
    }


def test_a_bare_run_result_encodes_as_an_anonymous_completion() -> None:
    result = RunResult("helper", (), Usage(), "error", 1)

    data = encode_event(result)["data"]

    assert (data["run_id"], data["status"], data["stop_reason"]) == ("", "failed", "error")


@pytest.mark.parametrize(
    "event",
    [
        RunStarted("run_1", "conv_1", "helper"),
        TextDelta("x", "helper"),
        MessageEvent(Message.assistant(None, tool_calls=[CALL]), "helper"),
        MessageEvent(Message.tool("call_1", "5"), "helper"),
        ToolCallEvent(CALL, "helper"),
        UsageEvent(Usage(1, 2), "fake", "helper"),
        ErrorEvent("ModelError", "down", "helper"),
        RunCompleted("run_1", "cancelled", "", Usage(3, 4), "cancelled"),
    ],
)
def test_decoding_an_encoded_event_gives_it_back(event: WireEvent) -> None:
    assert decode_event(encode_event(event)) == event


def test_a_tool_result_decodes_without_the_arguments_its_call_carried() -> None:
    event = ToolResultEvent(ToolResult(CALL, "5", True, 0.5), "helper")

    decoded = decode_event(encode_event(event))

    assert isinstance(decoded, ToolResultEvent)
    assert decoded.result.call.id == "call_1"
    assert (decoded.result.content, decoded.result.is_error) == ("5", True)
    assert decoded.result.duration_s == pytest.approx(0.5)


def test_decoding_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown event type 'nope'"):
        decode_event({"type": "nope", "data": {}})


def test_sse_frames_carry_the_seq_type_and_json_data() -> None:
    frame = format_event(7, "text_delta", {"text": "é\n", "agent": "a"})

    assert frame == b'id: 7\nevent: text_delta\ndata: {"text":"\xc3\xa9\\n","agent":"a"}\n\n'


def test_openai_frames_are_data_only() -> None:
    assert format_data({"a": 1}) == b'data: {"a":1}\n\n'
    assert format_data(b"[DONE]") == b"data: [DONE]\n\n"
