"""A deterministic model that answers from a script: for tests, demos and examples."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TypeAlias

import orjson

from ..errors import AgentguildError
from ..types import Message, ToolCall, Usage
from .base import ChatChunk, ChatRequest, ChatResponse, ToolCallDelta

Reply: TypeAlias = "str | Message | ChatResponse | BaseException | Callable[[ChatRequest], Reply]"
"""One scripted answer: text, a message, a full response, an exception to raise, or a
function of the request that returns any of those."""

_call_ids = itertools.count(1)


def tool_call(name: str, /, **arguments: object) -> ToolCall:
    """A `ToolCall` with a fresh id and `arguments` serialised to JSON (for scripts)."""
    return ToolCall(f"call_{next(_call_ids)}", name, orjson.dumps(arguments).decode())


class ScriptExhaustedError(AgentguildError):
    """The scripted model was called more times than it has replies."""


class ScriptedModel:
    """Answers each call with the next reply of its script.

    `ScriptedModel(["Hello!"])` always answers "Hello!" once; `cycle=True` repeats the
    script forever. Every request is recorded in `requests` for assertions.
    Streaming splits text into word-sized chunks and each tool call into two deltas, so
    consumers see a realistic stream.
    """

    def __init__(
        self,
        replies: Iterable[Reply],
        *,
        cycle: bool = False,
        name: str = "scripted",
        delay_s: float = 0.0,
    ) -> None:
        self._script = list(replies)
        self._replies = itertools.cycle(self._script) if cycle else iter(self._script)
        self._name = name
        self._delay_s = delay_s
        self.requests: list[ChatRequest] = []

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        return self._resolve(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        response = await self.complete(request)
        for piece in _split_words(response.message.text):
            yield ChatChunk(text=piece)
        for index, call in enumerate(response.message.tool_calls):
            yield ChatChunk(tool_calls=(ToolCallDelta(index, call.id, call.name, ""),))
            yield ChatChunk(tool_calls=(ToolCallDelta(index, arguments=call.arguments),))
        yield ChatChunk(finish_reason=response.finish_reason, usage=response.usage)

    def _resolve(self, request: ChatRequest) -> ChatResponse:
        try:
            reply: Reply = next(self._replies)
        except StopIteration:
            raise ScriptExhaustedError(
                f"scripted model {self._name!r} has no reply left for call "
                f"#{len(self.requests)} (script has {len(self._script)}); "
                "add replies or pass cycle=True"
            ) from None
        while callable(reply) and not isinstance(reply, BaseException):
            reply = reply(request)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, ChatResponse):
            return reply
        message = Message.assistant(reply) if isinstance(reply, str) else reply
        prompt_tokens = sum(len(m.text.split()) for m in request.messages)
        return ChatResponse(
            message=message,
            usage=Usage(prompt_tokens, len(message.text.split()) + 8 * len(message.tool_calls)),
            finish_reason="tool_calls" if message.tool_calls else "stop",
            model=self._name,
        )


def _split_words(text: str) -> list[str]:
    if not text:
        return []
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]
