"""Client for any OpenAI-compatible chat-completions endpoint.

Qwen (DashScope compatible mode), OpenAI, vLLM, Ollama and llama.cpp's server all speak
this protocol. This is the hot path of every agent, so it is deliberately lean: one pooled
keep-alive aiohttp session per event loop, request bodies built as plain dicts and
serialised with orjson, SSE parsed line by line without an intermediate model layer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from ..errors import MalformedResponseError, ModelConnectionError, ModelError, ModelTimeoutError
from ..types import Message, Usage
from ._http_errors import error_for_status
from .base import ChatChunk, ChatRequest, ChatResponse, ToolCallDelta

_JSON = "application/json"


class OpenAICompatModel:
    """A `ChatModel` talking to an OpenAI-compatible `/chat/completions` endpoint.

    The HTTP connection pool is created on first use and reused by every call made from
    the same event loop; call `aclose()` when done (or use `async with`).

    Timeouts: `timeout` bounds a whole non-streaming call, and the silence between two
    chunks of a stream; `connect_timeout` bounds establishing a connection.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_connections: int = 1000,
        headers: Mapping[str, str] | None = None,
        stream_usage: bool = True,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._url = f"{self.base_url}/chat/completions"
        self._name = name or f"openai:{model}"
        self._headers = {"Content-Type": _JSON, "Accept": _JSON, **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=timeout
        )
        self._max_connections = max_connections
        self._stream_usage = stream_usage
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"OpenAICompatModel(model={self.model!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> OpenAICompatModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        body = orjson.dumps(self._payload(request, stream=False))
        try:
            async with self._get_session().post(
                self._url, data=body, timeout=self._timeout
            ) as response:
                raw = await response.read()
                if response.status != 200:
                    raise error_for_status(response.status, response.headers, raw)
        except aiohttp.ClientError as exc:
            raise _transport_error(exc, self._url) from exc
        except TimeoutError as exc:
            raise ModelTimeoutError(f"{self._name}: no answer from {self._url} in time") from exc
        return _parse_response(raw, self._name)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        body = orjson.dumps(self._payload(request, stream=True))
        finished = False
        try:
            async with self._get_session().post(
                self._url, data=body, timeout=self._stream_timeout
            ) as response:
                if response.status != 200:
                    raise error_for_status(response.status, response.headers, await response.read())
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue  # blank separators, comments, event: lines
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        finished = True
                        break
                    chunk = _parse_chunk(data, self._name)
                    if chunk is not None:
                        finished = finished or chunk.finish_reason is not None
                        yield chunk
        except aiohttp.ClientError as exc:
            raise _transport_error(exc, self._url) from exc
        except TimeoutError as exc:
            raise ModelTimeoutError(f"{self._name}: stream from {self._url} stalled") from exc
        if not finished:
            raise ModelConnectionError(f"{self._name}: stream from {self._url} ended early")

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            session = aiohttp.ClientSession(connector=connector, headers=self._headers)
            self._session, self._session_loop = session, loop
        return session

    def _payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [message.to_openai() for message in request.messages],
        }
        if request.tools:
            payload["tools"] = [spec.to_openai() for spec in request.tools]
            if request.tool_choice is not None:
                payload["tool_choice"] = _tool_choice(request.tool_choice)
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(request, key)
            if value is not None:
                payload[key] = value
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.response_format is not None:
            payload["response_format"] = dict(request.response_format)
        if stream:
            payload["stream"] = True
            if self._stream_usage:
                payload["stream_options"] = {"include_usage": True}
        if request.extra:
            payload.update(request.extra)
        return payload


def _tool_choice(choice: str) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def _transport_error(exc: aiohttp.ClientError, url: str) -> ModelError:
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return ModelTimeoutError(f"timed out talking to {url}: {exc}")
    return ModelConnectionError(f"could not talk to {url}: {type(exc).__name__}: {exc}")


def _usage(data: Mapping[str, Any] | None) -> Usage | None:
    if not data:
        return None
    return Usage(data.get("prompt_tokens") or 0, data.get("completion_tokens") or 0)


def _parse_response(raw: bytes, name: str) -> ChatResponse:
    try:
        data = orjson.loads(raw)
        choice = data["choices"][0]
        message = Message.from_openai(choice["message"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise MalformedResponseError(
            f"{name}: unexpected response body ({type(exc).__name__}: {exc})",
            status=200,
            body=raw[:500].decode(errors="replace"),
        ) from exc
    return ChatResponse(
        message=message,
        usage=_usage(data.get("usage")) or Usage(),
        finish_reason=choice.get("finish_reason") or "stop",
        model=data.get("model") or "",
    )


def _parse_chunk(data: bytes, name: str) -> ChatChunk | None:
    try:
        event = orjson.loads(data)
        if "error" in event:
            raise error_for_status(500, {}, data)
        choices = event.get("choices")
        usage = _usage(event.get("usage"))
        if not choices:
            return ChatChunk(usage=usage, model=event.get("model") or "") if usage else None
        choice = choices[0]
        delta = choice.get("delta") or {}
        raw_calls = delta.get("tool_calls")
        calls = (
            tuple(
                ToolCallDelta(
                    call.get("index", position),
                    call.get("id"),
                    (call.get("function") or {}).get("name"),
                    (call.get("function") or {}).get("arguments") or "",
                )
                for position, call in enumerate(raw_calls)
            )
            if raw_calls
            else ()
        )
        return ChatChunk(
            text=delta.get("content") or "",
            tool_calls=calls,
            finish_reason=choice.get("finish_reason"),
            usage=usage,
            model=event.get("model") or "",
        )
    except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
        raise MalformedResponseError(
            f"{name}: malformed stream event ({type(exc).__name__}: {exc})",
            status=200,
            body=data[:500].decode(errors="replace"),
        ) from exc
