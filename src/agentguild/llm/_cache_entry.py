"""What the response cache stores: an answer as streamed chunks or as one response."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ..types import Message, Usage
from .base import ChatChunk, ChatResponse, ChunkAccumulator, ToolCallDelta

_FORMAT = 1


class CorruptEntryError(ValueError):
    """Stored bytes are not a cache entry this version can read (treated as a miss)."""


class CacheEntry:
    """One cached answer, usable by both `complete()` and `stream()`.

    An answer cached from a stream keeps its exact chunk sequence (text and tool-call
    deltas, finish reason, usage), so a streaming hit replays what the provider sent; a
    `complete()` hit accumulates those chunks into the response. An answer cached from
    `complete()` keeps the response; a streaming hit on it replays it as a short synthetic
    sequence (its text, one delta per tool call, a final chunk with finish reason and
    usage), since no original chunking exists.
    """

    __slots__ = ("_chunks", "_response", "_streamed")

    def __init__(
        self, *, chunks: Sequence[ChatChunk] | None = None, response: ChatResponse | None = None
    ) -> None:
        if (chunks is None) == (response is None):
            raise ValueError("a cache entry holds either chunks or a response")
        self._chunks = None if chunks is None else tuple(chunks)
        self._response = response
        self._streamed = chunks is not None

    @classmethod
    def from_chunks(cls, chunks: Iterable[ChatChunk]) -> CacheEntry:
        """An entry for a streamed answer."""
        return cls(chunks=tuple(chunks))

    @classmethod
    def from_response(cls, response: ChatResponse) -> CacheEntry:
        """An entry for a `complete()` answer."""
        return cls(response=response)

    @property
    def streamed(self) -> bool:
        """Whether the entry holds an original chunk sequence."""
        return self._streamed

    def response(self) -> ChatResponse:
        """The answer as one response (accumulated once from the chunks if needed)."""
        if self._response is None:
            accumulator = ChunkAccumulator()
            for chunk in self.chunks():
                accumulator.add(chunk)
            self._response = accumulator.response()
        return self._response

    def chunks(self) -> tuple[ChatChunk, ...]:
        """The answer as a chunk sequence (synthesised once from the response if needed)."""
        if self._chunks is None:
            self._chunks = _chunks_of(self.response())
        return self._chunks

    def encode(self) -> bytes:
        """Compact JSON bytes for a shared store, in the form the answer was cached in."""
        body: dict[str, Any]
        if self._streamed:
            body = {"v": _FORMAT, "chunks": [_chunk_to_json(c) for c in self.chunks()]}
        else:
            body = {"v": _FORMAT, "response": _response_to_json(self.response())}
        return orjson.dumps(body)

    @classmethod
    def decode(cls, raw: bytes) -> CacheEntry:
        """Parse `encode()`'s output; raises `CorruptEntryError` on anything else."""
        try:
            body = orjson.loads(raw)
            if body["v"] != _FORMAT:
                raise CorruptEntryError(f"cache entry format {body['v']!r} != {_FORMAT}")
            if "chunks" in body:
                return cls(chunks=[_chunk_from_json(c) for c in body["chunks"]])
            return cls(response=_response_from_json(body["response"]))
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            if isinstance(exc, CorruptEntryError):
                raise
            raise CorruptEntryError(f"unreadable cache entry: {type(exc).__name__}: {exc}") from exc


def _chunks_of(response: ChatResponse) -> tuple[ChatChunk, ...]:
    chunks: list[ChatChunk] = []
    text = response.message.text
    if text:
        chunks.append(ChatChunk(text=text, model=response.model))
    for index, call in enumerate(response.message.tool_calls):
        delta = ToolCallDelta(index, call.id, call.name, call.arguments)
        chunks.append(ChatChunk(tool_calls=(delta,), model=response.model))
    chunks.append(
        ChatChunk(finish_reason=response.finish_reason, usage=response.usage, model=response.model)
    )
    return tuple(chunks)


def _usage_to_json(usage: Usage) -> list[int]:
    return [usage.prompt_tokens, usage.completion_tokens]


def _chunk_to_json(chunk: ChatChunk) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if chunk.text:
        out["t"] = chunk.text
    if chunk.tool_calls:
        out["c"] = [[d.index, d.id, d.name, d.arguments] for d in chunk.tool_calls]
    if chunk.finish_reason is not None:
        out["f"] = chunk.finish_reason
    if chunk.usage is not None:
        out["u"] = _usage_to_json(chunk.usage)
    if chunk.model:
        out["m"] = chunk.model
    return out


def _chunk_from_json(data: dict[str, Any]) -> ChatChunk:
    usage = data.get("u")
    return ChatChunk(
        text=data.get("t", ""),
        tool_calls=tuple(
            ToolCallDelta(i, call_id, name, args) for i, call_id, name, args in data.get("c", ())
        ),
        finish_reason=data.get("f"),
        usage=None if usage is None else Usage(int(usage[0]), int(usage[1])),
        model=data.get("m", ""),
    )


def _response_to_json(response: ChatResponse) -> dict[str, Any]:
    return {
        "message": response.message.to_openai(),
        "u": _usage_to_json(response.usage),
        "f": response.finish_reason,
        "m": response.model,
    }


def _response_from_json(data: dict[str, Any]) -> ChatResponse:
    usage = data["u"]
    return ChatResponse(
        message=Message.from_openai(data["message"]),
        usage=Usage(int(usage[0]), int(usage[1])),
        finish_reason=data["f"],
        model=data["m"],
    )
