"""What a `FakeLLMServer` answers: scripted replies and injectable failures.

Each request to `/v1/chat/completions` consumes one `ScriptItem` from the server's queue
(or asks the default responder when the queue is empty). An item is either an answer
(`Reply`, or a plain string as shorthand for a text reply) or a failure (`ErrorReply`,
`Hang`, `MalformedReply`, `DropConnection`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

JSONObject: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """One tool call inside a scripted `Reply`."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    """The call's arguments: a mapping (serialised to JSON) or raw JSON text, sent as is."""
    id: str | None = None
    """The call id; a fresh `call_<n>` when None."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: text, tool calls, or both.

    `Reply("Hello")` answers with text; `Reply(tool_calls=[FakeToolCall("add", {"a": 1})])`
    asks for a tool call. Usage is estimated from word counts unless given.
    """

    text: str | None = None
    tool_calls: Sequence[FakeToolCall] = ()
    latency: float | None = None
    """Seconds to wait before answering; None means the server's global latency."""
    chunk_latency: float = 0.0
    """When streaming, seconds to wait between chunks."""
    finish_reason: str | None = None
    """Overrides the finish reason ('tool_calls' when there are calls, else 'stop')."""
    prompt_tokens: int | None = None
    """Overrides the reported prompt tokens (estimated from the request otherwise)."""
    completion_tokens: int | None = None
    """Overrides the reported completion tokens (estimated from the reply otherwise)."""

    @classmethod
    def calling(
        cls, name: str, arguments: Mapping[str, Any] | str | None = None, **options: Any
    ) -> Reply:
        """A reply asking for one call of tool `name` (`options` are other `Reply` fields)."""
        return cls(
            tool_calls=(FakeToolCall(name, {} if arguments is None else arguments),), **options
        )


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An HTTP error with an OpenAI-style body `{"error": {message, type, param, code}}`."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    latency: float | None = None
    """Seconds to wait before answering; None means the server's global latency."""

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0, *, latency: float | None = None) -> ErrorReply:
        """HTTP 429 with a `Retry-After` header (seconds, as OpenAI sends it)."""
        seconds = f"{retry_after:g}"
        return cls(
            429,
            f"Rate limit reached for requests. Please try again in {seconds}s.",
            "requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": seconds},
            latency=latency,
        )

    @classmethod
    def server_error(cls, status: int = 500, *, latency: float | None = None) -> ErrorReply:
        """A 5xx failure (500, 502, 503...)."""
        if not 500 <= status <= 599:
            raise ValueError(f"server_error needs a 5xx status, got {status}")
        messages = {
            500: "The server had an error while processing your request. Sorry about that!",
            502: "Bad gateway.",
            503: "The engine is currently overloaded, please try again later.",
        }
        return cls(status, messages.get(status, "Server error."), "server_error", latency=latency)

    @classmethod
    def unauthorized(cls, *, latency: float | None = None) -> ErrorReply:
        """HTTP 401 for an invalid API key."""
        return cls(
            401,
            "Incorrect API key provided. You can find your API key in your account settings.",
            "invalid_request_error",
            code="invalid_api_key",
            latency=latency,
        )

    @classmethod
    def context_length_exceeded(
        cls, max_tokens: int = 8192, requested: int = 9000, *, latency: float | None = None
    ) -> ErrorReply:
        """HTTP 400 with code `context_length_exceeded`, as OpenAI reports a too-long prompt."""
        return cls(
            400,
            f"This model's maximum context length is {max_tokens} tokens. However, your "
            f"messages resulted in {requested} tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            code="context_length_exceeded",
            param="messages",
            latency=latency,
        )

    @classmethod
    def bad_request(cls, message: str, *, param: str | None = None) -> ErrorReply:
        """HTTP 400 `invalid_request_error` with the given message."""
        return cls(400, message, "invalid_request_error", param=param)

    def body(self) -> JSONObject:
        """The JSON error body OpenAI sends with this status."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer (a client-side timeout), until the server shuts down.

    When streaming, `after_chunks` chunks are sent first, so a client sees the stream stall
    midway. On shutdown the connection is closed without an answer.
    """

    after_chunks: int = 0


@dataclass(frozen=True, slots=True)
class MalformedReply:
    """A broken answer: invalid JSON with status 200, or, when streaming, a broken SSE data
    line after `after_chunks` valid chunks (then `data: [DONE]`)."""

    after_chunks: int = 1


@dataclass(frozen=True, slots=True)
class DropConnection:
    """Close the connection without completing the answer.

    When streaming, `after_chunks` chunks are sent first; otherwise nothing is sent.
    """

    after_chunks: int = 1


ScriptItem: TypeAlias = str | Reply | ErrorReply | Hang | MalformedReply | DropConnection
"""One scripted answer or failure; a plain string is a text `Reply`."""

Responder: TypeAlias = Callable[[JSONObject], "ScriptItem | Awaitable[ScriptItem]"]
"""Answers a request (its parsed JSON body) when the script queue is empty."""
