"""Run events as JSON: the one wire format of SSE, WebSocket and stored event logs.

An encoded event is `{"type": <type>, "data": {...}}`. SSE sends it as
`id: <seq>\\nevent: <type>\\ndata: <json of data>\\n\\n`; the WebSocket sends
`{"seq": <seq>, "type": <type>, "data": {...}}`. `decode_event` turns either back into the
typed event (a `tool_result` does not repeat the call's arguments: its `tool_call` has them).

| type | data |
|---|---|
| `run_started` | `run_id, conversation_id, agent` |
| `text_delta` | `text, agent` |
| `message` | `message` (OpenAI format), `agent`, and `seq` once it is stored |
| `tool_call` | `call: {id, name, arguments}, agent` |
| `tool_result` | `call_id, name, content, is_error, duration_ms, agent` |
| `usage` | `prompt_tokens, completion_tokens, model, agent` |
| `error` | `type, message, agent` |
| `run_completed` | `run_id, status, output, usage, stop_reason` |

(`usage` of `run_completed` is `{prompt_tokens, completion_tokens}`, the run's total.)

Teams add `speaker_selected` (`speakers, agent, reason`), `handoff` (`source, target, agent,
message`) and `termination` (`reason, agent`); planned tasks add `task_update` (`task_id,
status, agent, detail`) and `subtask_update` (`task_id, subtask_id, status, agent, title,
category, specialist, attempt, detail`). Clients ignore types they do not know.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeAlias

from ..types import (
    ErrorEvent,
    Event,
    HandoffEvent,
    JSONObject,
    Message,
    MessageEvent,
    RunResult,
    SpeakerSelected,
    StopReason,
    SubtaskUpdate,
    TaskUpdate,
    TerminationEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    ToolResultEvent,
    Usage,
    UsageEvent,
)

EventType: TypeAlias = Literal[
    "run_started",
    "text_delta",
    "message",
    "tool_call",
    "tool_result",
    "usage",
    "error",
    "run_completed",
    "speaker_selected",
    "handoff",
    "termination",
    "task_update",
    "subtask_update",
]
"""The `type` of an encoded event."""

RunStatus: TypeAlias = Literal[
    "queued", "running", "completed", "failed", "cancelled", "interrupted"
]
"""A run's lifecycle state (stored on the run row)."""

TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "interrupted"})
"""Statuses a run never leaves."""


@dataclass(frozen=True, slots=True)
class RunStarted:
    """The first event of a served run: which run, on which conversation, by which agent."""

    run_id: str
    conversation_id: str
    agent: str


@dataclass(frozen=True, slots=True)
class RunCompleted:
    """The last event of a served run, whatever its outcome."""

    run_id: str
    status: RunStatus
    output: str = ""
    usage: Usage = field(default_factory=Usage)
    stop_reason: StopReason = "completed"

    @classmethod
    def from_result(cls, run_id: str, status: RunStatus, result: RunResult) -> RunCompleted:
        """The completion event of a run that produced `result`."""
        return cls(run_id, status, result.output, result.usage, result.stop_reason)


WireEvent: TypeAlias = Event | RunStarted | RunCompleted
"""Everything that travels to clients: an agent's events plus the run's start and end."""


def encode_event(event: WireEvent) -> JSONObject:
    """The event as `{"type", "data"}` JSON (a bare `RunResult` encodes as `run_completed`
    of an anonymous run)."""
    event_type, data = _encode(event)
    return {"type": event_type, "data": data}


def decode_event(encoded: Mapping[str, Any]) -> WireEvent:
    """The typed event an `encode_event` dict (or a WebSocket message) stands for.

    Raises `ValueError` for an unknown type and `KeyError` for missing fields.
    """
    event_type = encoded["type"]
    data: Mapping[str, Any] = encoded["data"]
    decoder = _DECODERS.get(event_type)
    if decoder is None:
        raise ValueError(f"unknown event type {event_type!r}; known: {sorted(_DECODERS)}")
    return decoder(data)


_PLAIN: dict[type[Any], EventType] = {
    SpeakerSelected: "speaker_selected",
    HandoffEvent: "handoff",
    TerminationEvent: "termination",
    TaskUpdate: "task_update",
    SubtaskUpdate: "subtask_update",
}
"""Events whose fields are their data, unchanged (tuples become lists)."""

_PlainEvent: TypeAlias = (
    SpeakerSelected | HandoffEvent | TerminationEvent | TaskUpdate | SubtaskUpdate
)


def _encode(event: WireEvent) -> tuple[EventType, JSONObject]:
    if isinstance(event, _PlainEvent):
        data = {f.name: getattr(event, f.name) for f in fields(event)}
        return _PLAIN[type(event)], {
            k: list(v) if isinstance(v, tuple) else v for k, v in data.items()
        }
    if isinstance(event, TextDelta):
        return "text_delta", {"text": event.text, "agent": event.agent}
    if isinstance(event, MessageEvent):
        return "message", {"message": event.message.to_openai(), "agent": event.agent}
    if isinstance(event, ToolCallEvent):
        call = event.call
        return "tool_call", {
            "call": {"id": call.id, "name": call.name, "arguments": call.arguments},
            "agent": event.agent,
        }
    if isinstance(event, ToolResultEvent):
        result = event.result
        return "tool_result", {
            "call_id": result.call.id,
            "name": result.call.name,
            "content": result.content,
            "is_error": result.is_error,
            "duration_ms": round(result.duration_s * 1000, 3),
            "agent": event.agent,
        }
    if isinstance(event, UsageEvent):
        return "usage", {
            "prompt_tokens": event.usage.prompt_tokens,
            "completion_tokens": event.usage.completion_tokens,
            "model": event.model,
            "agent": event.agent,
        }
    if isinstance(event, ErrorEvent):
        return "error", {"type": event.error_type, "message": event.message, "agent": event.agent}
    if isinstance(event, RunStarted):
        return "run_started", {
            "run_id": event.run_id,
            "conversation_id": event.conversation_id,
            "agent": event.agent,
        }
    completed = (
        RunCompleted.from_result("", _STATUS_OF_STOP[event.stop_reason], event)
        if isinstance(event, RunResult)
        else event
    )
    return "run_completed", {
        "run_id": completed.run_id,
        "status": completed.status,
        "output": completed.output,
        "usage": {
            "prompt_tokens": completed.usage.prompt_tokens,
            "completion_tokens": completed.usage.completion_tokens,
        },
        "stop_reason": completed.stop_reason,
    }


_STATUS_OF_STOP: dict[str, RunStatus] = {
    "completed": "completed",
    "max_turns": "completed",
    "error": "failed",
    "cancelled": "cancelled",
}


def _tool_result(data: Mapping[str, Any]) -> ToolResultEvent:
    # The arguments are not part of a tool_result event; the tool_call event carried them.
    call = ToolCall(data["call_id"], data["name"], "")
    result = ToolResult(call, data["content"], data["is_error"], data["duration_ms"] / 1000)
    return ToolResultEvent(result, data["agent"])


def _run_completed(data: Mapping[str, Any]) -> RunCompleted:
    usage = data["usage"]
    return RunCompleted(
        data["run_id"],
        data["status"],
        data["output"],
        Usage(usage["prompt_tokens"], usage["completion_tokens"]),
        data["stop_reason"],
    )


def _plain(cls: type[_PlainEvent]) -> Callable[[Mapping[str, Any]], WireEvent]:
    def decode(data: Mapping[str, Any]) -> WireEvent:
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)

    return decode


_DECODERS: dict[str, Callable[[Mapping[str, Any]], WireEvent]] = {
    **{name: _plain(cls) for cls, name in _PLAIN.items()},
    "run_started": lambda d: RunStarted(d["run_id"], d["conversation_id"], d["agent"]),
    "text_delta": lambda d: TextDelta(d["text"], d["agent"]),
    "message": lambda d: MessageEvent(Message.from_openai(d["message"]), d["agent"]),
    "tool_call": lambda d: ToolCallEvent(
        ToolCall(d["call"]["id"], d["call"]["name"], d["call"]["arguments"]), d["agent"]
    ),
    "tool_result": _tool_result,
    "usage": lambda d: UsageEvent(
        Usage(d["prompt_tokens"], d["completion_tokens"]), d["model"], d["agent"]
    ),
    "error": lambda d: ErrorEvent(d["type"], d["message"], d["agent"]),
    "run_completed": _run_completed,
}
