"""Bodies in the exact shapes of OpenAI's chat-completions API (JSON and SSE chunks)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .replies import JSONObject, Reply
from .responders import message_text

SSE_DONE = b"data: [DONE]\n\n"
_FINGERPRINT = "fp_agentguild_fake"
_ARGUMENT_FRAGMENT = 8
"""Characters of tool-call arguments per streamed delta (OpenAI streams a token or so)."""


@dataclass(frozen=True, slots=True)
class ResolvedCall:
    """A scripted tool call with its id assigned and its arguments as JSON text."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> JSONObject:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Completion:
    """Everything needed to render one successful answer, in either shape."""

    id: str
    created: int
    model: str
    reply: Reply
    calls: Sequence[ResolvedCall]
    prompt_tokens: int

    @property
    def finish_reason(self) -> str:
        return self.reply.finish_reason or ("tool_calls" if self.calls else "stop")

    def usage(self) -> JSONObject:
        reply = self.reply
        prompt = self.prompt_tokens if reply.prompt_tokens is None else reply.prompt_tokens
        completion = reply.completion_tokens
        if completion is None:
            completion = len((reply.text or "").split()) + sum(
                4 + len(call.arguments) // 4 for call in self.calls
            )
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def body(self) -> bytes:
        """The non-streaming JSON body."""
        message: JSONObject = {"role": "assistant", "content": self.reply.text, "refusal": None}
        if self.calls:
            message["tool_calls"] = [call.to_openai() for call in self.calls]
        return orjson.dumps(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": self.finish_reason,
                    }
                ],
                "usage": self.usage(),
                "system_fingerprint": _FINGERPRINT,
            }
        )

    def sse_events(self, *, include_usage: bool) -> Iterator[bytes]:
        """The streamed answer as SSE events (`data: {...}\\n\\n`), without `[DONE]`."""
        for delta in self._deltas():
            yield self._chunk(delta, None, include_usage)
        yield self._chunk({}, self.finish_reason, include_usage)
        if include_usage:
            yield sse_event({**self._chunk_head(), "choices": [], "usage": self.usage()})

    def _deltas(self) -> Iterator[JSONObject]:
        text = self.reply.text
        if text or not self.calls:
            yield {"role": "assistant", "content": "", "refusal": None}
            for piece in split_words(text or ""):
                yield {"content": piece}
            first: JSONObject = {}
        else:
            first = {"role": "assistant", "content": None, "refusal": None}
        for index, call in enumerate(self.calls):
            header = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield {**first, "tool_calls": [header]}
            first = {}
            args = call.arguments
            for start in range(0, len(args), _ARGUMENT_FRAGMENT):
                fragment = args[start : start + _ARGUMENT_FRAGMENT]
                yield {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}

    def _chunk_head(self) -> JSONObject:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": _FINGERPRINT,
        }

    def _chunk(self, delta: JSONObject, finish_reason: str | None, include_usage: bool) -> bytes:
        chunk: JSONObject = {
            **self._chunk_head(),
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            chunk["usage"] = None
        return sse_event(chunk)


def sse_event(data: Any) -> bytes:
    """One SSE event carrying `data` as JSON."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


def split_words(text: str) -> list[str]:
    """Split text into word-sized stream pieces that concatenate back to it."""
    if not text:
        return []
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


def estimate_prompt_tokens(request: JSONObject) -> int:
    """A cheap, deterministic stand-in for a tokenizer: words plus 3 per message."""
    messages = request.get("messages") or []
    return sum(3 + len(message_text(m).split()) for m in messages if isinstance(m, dict))


def models_body(model_ids: Sequence[str], created: int) -> bytes:
    """The `GET /v1/models` body."""
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": "agentguild"}
                for m in model_ids
            ],
        }
    )
