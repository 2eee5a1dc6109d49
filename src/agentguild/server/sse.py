"""Server-sent events that stop the work behind them as soon as the client leaves.

`EventStreamResponse` streams an async iterator of ready-made SSE frames. Unlike
Starlette's `StreamingResponse` (which, under ASGI 2.4 servers, notices a gone client only
when its next write fails), it listens for the disconnect while the iterator is busy and
closes the iterator at once, so the model and tool calls behind a stream are cancelled
promptly even while no event is being produced. Idle streams get a `: ping` comment every
`ping_interval_s`, which keeps proxies from timing them out.

`until_disconnected` does the same for a plain (non-streamed) request: it awaits the work
but cancels it if the client goes away first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "ClientDisconnectedError",
    "EventStreamResponse",
    "format_data",
    "format_event",
    "last_event_id",
    "until_disconnected",
]

T = TypeVar("T")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Headers of every event stream: not cached, not buffered by nginx."""


class ClientDisconnectedError(Exception):
    """The client went away before the response was ready."""


def format_event(seq: int, event_type: str, data: Mapping[str, Any]) -> bytes:
    """One SSE message: `id: <seq>`, `event: <type>`, `data: <json>`."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event_type.encode(), orjson.dumps(data))


def format_data(data: Mapping[str, Any] | bytes) -> bytes:
    """One data-only SSE message (the OpenAI streaming format); bytes are sent as is."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return b"data: " + payload + b"\n\n"


def last_event_id(connection: HTTPConnection, default: int = 0) -> int:
    """The `Last-Event-ID` header (or `?last_event_id=`) as an int; `default` if absent."""
    raw = connection.headers.get("last-event-id") or connection.query_params.get("last_event_id")
    if raw is None:
        return default
    try:
        return max(int(raw), 0)
    except ValueError:
        return default


class EventStreamResponse(Response):
    """A `text/event-stream` response of ready-made frames, cancelled when the client leaves.

    The iterator is always closed (`aclose`), whether it ends, fails or the client goes
    away, so its `finally` blocks run promptly.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        ping_interval_s: float | None = 15.0,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        self.content = content
        self.on_close = on_close
        """Called once the response is over, however it ended (after `content` is closed)."""
        self.status_code = status_code
        self.ping_interval_s = ping_interval_s
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})
        self._send_lock = asyncio.Lock()
        self._last_send = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        stream = asyncio.ensure_future(self._stream(send))
        helpers = [asyncio.ensure_future(_wait_disconnect(receive))]
        if self.ping_interval_s:
            helpers.append(asyncio.ensure_future(self._ping(send, self.ping_interval_s)))
        try:
            await asyncio.wait([stream, helpers[0]], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stream, *helpers):
                task.cancel()
            await asyncio.gather(stream, *helpers, return_exceptions=True)
            if self.on_close is not None:
                self.on_close()
        if stream.done() and not stream.cancelled():
            stream.result()  # re-raises what the stream failed with, if anything

    async def _stream(self, send: Send) -> None:
        try:
            async for frame in self.content:
                await self._send(send, frame, more=True)
        finally:
            await aclose(self.content)
        await self._send(send, b"", more=False)

    async def _ping(self, send: Send, interval: float) -> None:
        while True:
            await asyncio.sleep(max(interval - (time.monotonic() - self._last_send), 0.01))
            if time.monotonic() - self._last_send >= interval:
                await self._send(send, b": ping\n\n", more=True)

    async def _send(self, send: Send, body: bytes, *, more: bool) -> None:
        async with self._send_lock:
            await send({"type": "http.response.body", "body": body, "more_body": more})
            self._last_send = time.monotonic()


async def aclose(iterator: AsyncIterator[Any]) -> None:
    """Close an async generator (run its `finally` blocks now); other iterators are left."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it and raise
    `ClientDisconnectedError`. Call it after the request body has been read."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_wait_disconnect(request.receive))
    try:
        await asyncio.wait([task, watch], return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnectedError("the client disconnected before the response was ready")
    return task.result()
