"""The assistant agent: a model, a system prompt and tools, in a function-calling loop."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any

from ..errors import ModelError
from ..llm.base import ChatModel, ChatRequest, ChatResponse, ChunkAccumulator, ToolChoice
from ..tools.base import Tool, ToolRegistry
from ..tools.executor import ToolExecutor
from ..types import (
    ErrorEvent,
    Event,
    Message,
    MessageEvent,
    RunResult,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
    UsageEvent,
)
from .base import MessagesInput, final_result, run_sync, to_messages


class Assistant:
    """An LLM agent that answers, calling tools as the model asks, until it has a reply.

    One instance holds only configuration, so it is reusable and safe to run concurrently:
    all state of a run lives in that run. The model may be a `ChatModel` or the name of a
    configured model (`"local"` is the bundled offline model).

    `run()` yields `Event`s and ends with a `RunResult`. Each turn calls the model; if it
    asks for tools, they all run concurrently (see `ToolExecutor`) and their results go back
    to the model; a turn without tool calls ends the run. At most `max_turns` model calls
    are made (the run then stops with `stop_reason="max_turns"`). If the model fails, the
    run yields an `ErrorEvent` and raises the typed `ModelError`.
    """

    def __init__(
        self,
        model: ChatModel | str,
        *,
        name: str = "assistant",
        description: str = "",
        system_prompt: str | None = None,
        tools: Iterable[Tool | Callable[..., Any]] | ToolRegistry = (),
        max_turns: int = 10,
        stream: bool = False,
        tool_choice: ToolChoice | None = None,
        tool_timeout_s: float | None = 60.0,
        max_parallel_tools: int = 8,
        model_params: Mapping[str, Any] | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.model: ChatModel = _resolve_model(model) if isinstance(model, str) else model
        self.name = name
        self.description = description
        """What the agent is for: how teams, routers and callers of it as a tool see it."""
        self.system_prompt = system_prompt
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        self.max_turns = max_turns
        self.stream = stream
        self.tool_choice = tool_choice
        self.model_params = _checked_params(model_params or {})
        """Generation parameters for every call: temperature, max_tokens, seed, ..."""
        self._executor = ToolExecutor(
            self.tools, max_concurrency=max_parallel_tools, timeout_s=tool_timeout_s
        )
        self._specs = self.tools.specs

    def __repr__(self) -> str:
        return f"Assistant(name={self.name!r}, model={self.model.name!r}, tools={self.tools.names})"

    async def run(
        self, messages: MessagesInput, *, stream: bool | None = None
    ) -> AsyncIterator[Event]:
        """Run on a conversation (a user's text, a message, or a list of messages)."""
        streaming = self.stream if stream is None else stream
        history = to_messages(messages)
        if self.system_prompt and not (history and history[0].role == "system"):
            history.insert(0, Message.system(self.system_prompt))
        produced: list[Message] = []
        usage = Usage()
        for turn in range(1, self.max_turns + 1):
            response: ChatResponse | None = None
            async for item in self._call_model(history, streaming):
                if isinstance(item, ChatResponse):
                    response = item
                else:
                    yield item
            assert response is not None  # _call_model always ends with the response
            usage = usage + response.usage
            yield UsageEvent(response.usage, self.model.name, self.name)
            reply = response.message
            history.append(reply)
            produced.append(reply)
            yield MessageEvent(reply, self.name)
            if not reply.tool_calls:
                yield RunResult(self.name, tuple(produced), usage, "completed", turn)
                return
            for call in reply.tool_calls:
                yield ToolCallEvent(call, self.name)
            for result in await self._executor.execute(reply.tool_calls):
                tool_message = result.to_message()
                history.append(tool_message)
                produced.append(tool_message)
                yield ToolResultEvent(result, self.name)
                yield MessageEvent(tool_message, self.name)
        yield RunResult(self.name, tuple(produced), usage, "max_turns", self.max_turns)

    def with_tools(self, *extra: Tool | Callable[..., Any]) -> Assistant:
        """A copy of this assistant that also offers `extra` tools (same model and limits)."""
        clone = copy.copy(self)
        clone.tools = ToolRegistry([*self.tools, *extra])
        clone._executor = ToolExecutor(
            clone.tools,
            max_concurrency=self._executor.max_concurrency,
            timeout_s=self._executor.timeout_s,
        )
        clone._specs = clone.tools.specs
        return clone

    async def result(self, messages: MessagesInput, *, stream: bool | None = None) -> RunResult:
        """Run to completion and return the `RunResult`."""
        return await final_result(self.run(messages, stream=stream))

    def run_sync(self, messages: MessagesInput) -> RunResult:
        """Run to completion from synchronous code."""
        return run_sync(self.run(messages))

    async def _call_model(
        self, history: list[Message], streaming: bool
    ) -> AsyncIterator[TextDelta | ErrorEvent | ChatResponse]:
        request = ChatRequest(
            messages=tuple(history),
            tools=self._specs,
            tool_choice=self.tool_choice if self._specs else None,
            **self.model_params,
        )
        try:
            if not streaming:
                yield await self.model.complete(request)
                return
            accumulator = ChunkAccumulator()
            async for chunk in self.model.stream(request):
                accumulator.add(chunk)
                if chunk.text:
                    yield TextDelta(chunk.text, self.name)
            yield accumulator.response()
        except ModelError as exc:
            yield ErrorEvent(type(exc).__name__, str(exc), self.name)
            raise


_PARAMS = {f.name for f in fields(ChatRequest)} - {
    "messages",
    "tools",
    "tool_choice",
    "tenant_id",
    "caller_id",
}


def _checked_params(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(params) - _PARAMS
    if unknown:
        raise ValueError(
            f"unknown model parameter(s) {sorted(unknown)}; known: {sorted(_PARAMS)} "
            "(pass provider-specific fields as extra={...})"
        )
    return dict(params)


def _resolve_model(name: str) -> ChatModel:
    from ..llm.registry import resolve_model

    return resolve_model(name)
