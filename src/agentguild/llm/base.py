"""The `ChatModel` protocol every model client and wrapper implements, and its data types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from ..types import Message, ToolCall, ToolSpec, Usage

ToolChoice: TypeAlias = Literal["auto", "none", "required"] | str
"""'auto', 'none', 'required', or the name of the one tool the model must call."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat-completion request: the conversation, the tools on offer and the parameters."""

    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: Sequence[str] | None = None
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Provider-specific body fields, passed through unchanged."""
    tenant_id: str = "default"
    """The tenant the call is made for: part of every cache key, rate-limit key and metric."""
    caller_id: str | None = None
    """The API key or user the call is made for (rate limits, metering); not sent upstream."""


FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter"] | str


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A complete model answer."""

    message: Message
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason = "stop"
    model: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call; fragments with the same `index` concatenate."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One piece of a streamed answer."""

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    model: str = ""


@runtime_checkable
class ChatModel(Protocol):
    """An LLM: a provider client, or a wrapper (cache, retry, router...) around one."""

    @property
    def name(self) -> str:
        """A short identifier for logs, events and metrics (e.g. 'openai:gpt-4o-mini')."""
        ...

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer the request in one piece."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Answer the request as a stream of chunks (an async generator)."""
        ...


class ChunkAccumulator:
    """Assembles streamed `ChatChunk`s into the `ChatResponse` they add up to."""

    __slots__ = ("_calls", "_text", "finish_reason", "model", "usage")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, list[Any]] = {}
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.model = ""

    def add(self, chunk: ChatChunk) -> None:
        if chunk.text:
            self._text.append(chunk.text)
        for delta in chunk.tool_calls:
            slot = self._calls.get(delta.index)
            if slot is None:
                slot = self._calls[delta.index] = [delta.id, delta.name, []]
            else:
                slot[0] = slot[0] or delta.id
                slot[1] = slot[1] or delta.name
            if delta.arguments:
                slot[2].append(delta.arguments)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.model:
            self.model = chunk.model

    def response(self) -> ChatResponse:
        calls = tuple(
            ToolCall(call_id or f"call_{index}", name or "", "".join(args) or "{}")
            for index, (call_id, name, args) in sorted(self._calls.items())
        )
        text = "".join(self._text)
        return ChatResponse(
            message=Message.assistant(text or None, tool_calls=calls),
            usage=self.usage or Usage(),
            finish_reason=self.finish_reason or ("tool_calls" if calls else "stop"),
            model=self.model,
        )
