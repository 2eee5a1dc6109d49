"""The OpenAI-compatible API: each of the tenant's agents is a model.

```python
client = openai.AsyncOpenAI(base_url="http://localhost:8000/v1", api_key="ag_...")
reply = await client.chat.completions.create(model="assistant", messages=[...])
```

`POST /v1/chat/completions` is stateless: the request's messages are the whole
conversation (nothing is stored but usage). The agent runs its full tool loop server-side;
the client sees the final answer (streamed: every piece of assistant text as it comes).
Request generation parameters are ignored: the agent's configuration sets them.
This is the serving hot path: agents come from the in-memory catalog, bodies are parsed
and written with orjson, usage is batched, and no database transaction is made.
A client that disconnects cancels the agent's model and tool calls at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Depends, Request, Response

from ...errors import AgentguildError, ModelError
from ...runtime.agent_factory import bind_caller, run_events
from ...runtime.catalog import CatalogEntry
from ...runtime.limits import QuotaExceededError
from ...runtime.services import Services
from ...security import Permission, Principal
from ...store.usage_writer import UsageWriter
from ...types import Event, Message, RunResult, TextDelta, Usage, UsageEvent
from ..deps import ServicesDep, check_message_size, require
from ..errors import ApiError
from ..sse import (
    ClientDisconnectedError,
    EventStreamResponse,
    aclose,
    format_data,
    until_disconnected,
)

router = APIRouter(prefix="/v1", tags=["openai"])

_Execute = Annotated[Principal, Depends(require(Permission.AGENTS_EXECUTE))]
_Read = Annotated[Principal, Depends(require(Permission.AGENTS_READ))]
_Services = ServicesDep
_JSON = "application/json"
_MAX_MESSAGES = 500


class OpenAIError(Exception):
    """An error to answer in OpenAI's shape: `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}

    def response(self) -> Response:
        return Response(orjson.dumps(self.body), status_code=self.status, media_type=_JSON)


@router.get("/models", summary="List the agents as models")
async def list_models(principal: _Read, services: _Services) -> Response:
    """The tenant's agents, in the format of OpenAI's model list."""
    entries = await services.catalog.list(principal)
    data = [
        {"id": e.name, "object": "model", "created": int(e.created_at), "owned_by": "agentguild"}
        for e in entries
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=_JSON)


@router.post("/chat/completions", summary="Chat with an agent (OpenAI-compatible)")
async def chat_completions(request: Request, principal: _Execute) -> Response:
    """A chat completion from the agent named by `model` (streamed with `stream: true`)."""
    # Not `Depends(get_services)`: a sync dependency costs a thread-pool hop per request.
    services = cast(Services, request.app.state.services)
    try:
        body = _parse_body(await request.body())
        entry = await services.catalog.by_name(principal, body["model"])
        if entry is None:
            raise OpenAIError(
                404,
                f"The model `{body['model']}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        try:
            await services.runner.limits.check_tokens(principal)
        except QuotaExceededError as exc:
            raise OpenAIError(429, str(exc), "insufficient_quota", "insufficient_quota") from None
        messages = _messages(body["messages"], services)
        completion = _Completion(entry, principal, services.usage_writer)
        if body.get("stream") is True:
            options = body.get("stream_options") or {}
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            frames = completion.stream(messages, include_usage=include_usage)
            return EventStreamResponse(frames, ping_interval_s=None)
        try:
            answer = await until_disconnected(request, completion.complete(messages))
        except ClientDisconnectedError:
            return Response(status_code=499)
        return Response(orjson.dumps(answer), media_type=_JSON)
    except OpenAIError as exc:
        return exc.response()


class _Completion:
    """One chat completion: runs the agent, accounts usage, formats OpenAI objects."""

    def __init__(self, entry: CatalogEntry, principal: Principal, usage: UsageWriter) -> None:
        self.entry = entry
        self.principal = principal
        self.usage_writer = usage
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.usage = Usage()

    async def complete(self, messages: list[Message]) -> dict[str, Any]:
        result: RunResult | None = None
        try:
            async for event in self._events(messages, stream=False):
                if isinstance(event, RunResult):
                    result = event
        except AgentguildError as exc:
            raise _upstream_error(exc) from None
        if result is None:
            raise OpenAIError(500, "the agent ended without an answer", "server_error")
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.entry.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.output},
                    "logprobs": None,
                    "finish_reason": _finish_reason(result),
                }
            ],
            "usage": _usage(self.usage),
        }

    async def stream(self, messages: list[Message], *, include_usage: bool) -> AsyncIterator[bytes]:
        yield self._chunk({"role": "assistant", "content": ""}, include_usage=include_usage)
        events = self._events(messages, stream=True)
        try:
            async for event in events:
                if isinstance(event, TextDelta) and event.text:
                    yield self._chunk({"content": event.text}, include_usage=include_usage)
                elif isinstance(event, RunResult):
                    yield self._chunk({}, _finish_reason(event), include_usage=include_usage)
        except AgentguildError as exc:
            yield format_data(_upstream_error(exc).body)
            return
        finally:
            await aclose(events)
        if include_usage:
            yield format_data(self._usage_chunk())
        yield b"data: [DONE]\n\n"

    async def _events(self, messages: list[Message], *, stream: bool) -> AsyncIterator[Event]:
        # Bound here, in whichever task iterates: model calls are made for this caller.
        bind_caller(self.principal.tenant_id, self.principal.caller_id)
        events = run_events(self.entry.agent, messages, stream=stream)
        try:
            async for event in events:
                if isinstance(event, UsageEvent):
                    self._account(event)
                yield event
        finally:
            await aclose(events)

    def _account(self, event: UsageEvent) -> None:
        self.usage = self.usage + event.usage
        self.usage_writer.record(
            self.principal,
            model=event.model,
            prompt_tokens=event.usage.prompt_tokens,
            completion_tokens=event.usage.completion_tokens,
        )

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, *, include_usage: bool
    ) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.entry.name,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            chunk["usage"] = None
        return format_data(chunk)

    def _usage_chunk(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.entry.name,
            "choices": [],
            "usage": _usage(self.usage),
        }


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise OpenAIError(400, "the body is not valid JSON", "invalid_request_error") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "the body must be a JSON object", "invalid_request_error")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise OpenAIError(400, "`model` is required", "invalid_request_error", None, "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > _MAX_MESSAGES:
        raise OpenAIError(
            400,
            f"`messages` must be a list of 1 to {_MAX_MESSAGES} messages",
            "invalid_request_error",
            None,
            "messages",
        )
    return body


def _messages(raw: list[Any], services: Services) -> list[Message]:
    try:
        messages = [Message.from_openai(item) for item in raw]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise OpenAIError(
            400, f"invalid message in `messages`: {exc}", "invalid_request_error", None, "messages"
        ) from None
    try:
        for message in messages:
            check_message_size(message.text, services.settings)
    except ApiError as exc:
        raise OpenAIError(exc.status, exc.message, "invalid_request_error", exc.type) from None
    return messages


def _upstream_error(exc: AgentguildError) -> OpenAIError:
    if isinstance(exc, ModelError):
        return OpenAIError(502, f"the agent's model failed: {exc}", "upstream_error")
    return OpenAIError(500, f"the agent failed: {exc}", "server_error")


def _finish_reason(result: RunResult) -> str:
    return "length" if result.stop_reason == "max_turns" else "stop"


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
