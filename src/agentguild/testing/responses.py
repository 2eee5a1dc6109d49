"""Writing answers and scripted failures onto the wire (aiohttp responses)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import orjson
from aiohttp import web

from .openai_format import SSE_DONE, Completion
from .replies import DropConnection, ErrorReply, Hang, JSONObject, MalformedReply

_MALFORMED_JSON = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{'
_MALFORMED_SSE = b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": {"content": "x\n\n'


def error_response(item: ErrorReply) -> web.Response:
    """The HTTP error `item` describes, with its OpenAI-style JSON body."""
    return web.Response(
        status=item.status,
        body=orjson.dumps(item.body()),
        content_type="application/json",
        headers=dict(item.headers),
    )


async def send_stream(
    request: web.Request, completion: Completion, data: JSONObject
) -> web.StreamResponse:
    """Stream `completion` as SSE chunks, then `data: [DONE]`."""
    response = await _start_sse(request)
    delay = completion.reply.chunk_latency
    for sent, event in enumerate(_sse_events(completion, data)):
        if delay > 0 and sent:
            await asyncio.sleep(delay)
        await response.write(event)
    await response.write(SSE_DONE)
    await response.write_eof()
    return response


async def send_failure(
    request: web.Request,
    item: Hang | MalformedReply | DropConnection,
    data: JSONObject,
    partial: Completion | None,
) -> web.StreamResponse:
    """Fail as `item` says; when streaming (`partial` given), its first chunks come first."""
    if partial is None:
        if isinstance(item, MalformedReply):
            return web.Response(body=_MALFORMED_JSON, content_type="application/json")
        if isinstance(item, Hang):
            await _forever()
        return _drop(request, web.Response())
    response: web.StreamResponse = web.Response()
    if item.after_chunks > 0 or isinstance(item, MalformedReply):
        response = await _start_sse(request)
        for event in itertools.islice(_sse_events(partial, data), item.after_chunks):
            await response.write(event)
    if isinstance(item, MalformedReply):
        await response.write(_MALFORMED_SSE + SSE_DONE)
        await response.write_eof()
        return response
    if isinstance(item, Hang):
        await _forever()
    return _drop(request, response)


async def _forever() -> None:
    """Wait until cancelled (by the client going away, or by `FakeLLMServer.close`)."""
    await asyncio.get_running_loop().create_future()


def _sse_events(completion: Completion, data: JSONObject) -> Iterator[bytes]:
    options = data.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return completion.sse_events(include_usage=include_usage)


def _drop(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Close the connection; aiohttp then fails to finish `response` and ignores that."""
    if request.transport is not None:
        request.transport.close()
    return response


async def _start_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    await response.prepare(request)
    return response
