"""Stored history made safe to send to a model again."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Message

INTERRUPTED_TOOL_RESULT = "Error: this tool call was interrupted before it finished (no result)."
"""What the model is told about a call whose run stopped before its result was stored."""


def close_open_tool_calls(history: Sequence[Message]) -> list[Message]:
    """`history` with an error result added for every tool call that never got one.

    Messages are stored one at a time, so a run stopped between an assistant turn that
    calls tools and their results (cancelled, failed, or the server killed) leaves calls
    without answers, which OpenAI-compatible APIs reject. The stored record stays as it
    is; the model is told those calls were interrupted.
    """
    repaired: list[Message] = []
    open_calls: dict[str, Message] = {}
    for message in history:
        if message.role == "tool" and message.tool_call_id in open_calls:
            del open_calls[message.tool_call_id]
        elif open_calls:
            repaired.extend(_interrupted(open_calls))
            open_calls.clear()
        repaired.append(message)
        if message.role == "assistant":
            open_calls.update(
                (call.id, Message.tool(call.id, INTERRUPTED_TOOL_RESULT, name=call.name))
                for call in message.tool_calls
            )
    repaired.extend(_interrupted(open_calls))
    return repaired


def _interrupted(open_calls: dict[str, Message]) -> list[Message]:
    return list(open_calls.values())
