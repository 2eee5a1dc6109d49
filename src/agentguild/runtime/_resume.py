"""Completing the step a run was in when its process died, before the agent continues.

A run persists each step (see `_recorder`): its assistant turns, each tool call's row
before it executes and its outcome after, each tool result message. When a worker picks
up a run another worker left half-way, the last assistant turn may have tool calls without
a result message. For each of them, in order:

- the call's row has an outcome: the stored result becomes the message (never re-run);
- the call never started, or its tool is declared idempotent: it is executed again;
- otherwise (a non-idempotent call in flight): the model is told it was interrupted and
  may or may not have taken effect, and decides how to proceed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence

from ..store.models import ToolCallRecord
from ..tools.base import Tool
from ..types import (
    Event,
    Message,
    MessageEvent,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    ToolResultEvent,
)

NOT_RETRIED_RESULT = (
    "Error: this tool call was interrupted (the worker running it stopped) and was not "
    "retried because the tool is not idempotent: it may or may not have taken effect. "
    "Check its effect before calling it again, or tell the user."
)
"""The result a non-idempotent call in flight gets when its run resumes."""


def open_tool_calls(history: Sequence[Message]) -> list[ToolCall]:
    """The last assistant turn's tool calls that have no result message after it."""
    for index in range(len(history) - 1, -1, -1):
        message = history[index]
        if message.role == "assistant":
            answered = {m.tool_call_id for m in history[index + 1 :] if m.role == "tool"}
            return [call for call in message.tool_calls if call.id not in answered]
        if message.role != "tool":
            return []
    return []


def in_flight_rows(calls: Sequence[ToolCallRecord]) -> list[ToolCallRecord]:
    """Rows of calls still marked as executing (their worker died)."""
    return [row for row in calls if row.status in ("running", "interrupted")]


async def resume_steps(
    history: Sequence[Message],
    calls: Sequence[ToolCallRecord],
    tools: Mapping[str, Tool],
    agent: str,
) -> AsyncIterator[Event]:
    """The events completing the interrupted step (see the module docstring)."""
    latest = {row.call_id: row for row in calls}  # rows come in start order: keep the last
    for call in open_tool_calls(history):
        row = latest.get(call.id)
        if row is not None and row.status in ("completed", "failed") and row.result is not None:
            yield MessageEvent(Message.tool(call.id, row.result, name=call.name), agent)
            continue
        tool = tools.get(call.name)
        if tool is not None and (row is None or tool.idempotent):
            yield ToolCallEvent(call, agent)  # stored before it executes, as in a run
            result = await _execute(tool, call)
            yield ToolResultEvent(result, agent)
            yield MessageEvent(Message.tool(call.id, result.content, name=call.name), agent)
            continue
        yield MessageEvent(Message.tool(call.id, NOT_RETRIED_RESULT, name=call.name), agent)


async def _execute(tool: Tool, call: ToolCall) -> ToolResult:
    started = time.perf_counter()
    try:
        content, is_error = await tool.invoke(call.arguments), False
    except Exception as exc:
        content, is_error = f"Error: {type(exc).__name__}: {exc}", True
    return ToolResult(call, content, is_error, time.perf_counter() - started)
