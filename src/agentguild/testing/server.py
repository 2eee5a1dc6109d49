"""`FakeLLMServer`: an OpenAI-compatible chat-completions server answering from a script."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from ..errors import AgentguildError
from .openai_format import Completion, ResolvedCall, estimate_prompt_tokens, models_body
from .replies import (
    DropConnection,
    ErrorReply,
    Hang,
    JSONObject,
    MalformedReply,
    Reply,
    Responder,
    ScriptItem,
)
from .responders import Mode, responder_for_mode
from .responses import error_response, send_failure, send_stream

_SHUTDOWN_GRACE_S = 2.0
_PARTIAL_TEXT = "This answer is cut short by a scripted failure before it ends."


class FakeServerError(AgentguildError):
    """The fake LLM server could not start, or was used before it started."""


class FakeLLMServer:
    """An OpenAI-compatible fake LLM server, for tests and benchmarks.

    Serves `GET /v1/models` and `POST /v1/chat/completions` (JSON and SSE streaming).
    Each chat request consumes the next scripted item (see `script`); when none is left,
    the default responder answers (`responder`, or the built-in `mode`: 'echo' answers
    with the last user message, 'tool-loop' drives one tool round trip).

    ```python
    async with FakeLLMServer(Reply("Hi!"), ErrorReply.rate_limited(2)) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="test")
    ```

    Requests are recorded in `requests` (parsed JSON bodies); `request_count`, `in_flight`
    and `max_in_flight` count them. A request whose body is not a JSON object with a
    `messages` list gets a 400 and consumes no scripted item.
    """

    def __init__(
        self,
        *script: ScriptItem,
        mode: Mode = "echo",
        responder: Responder | None = None,
        latency: float = 0.0,
        tool_arguments: Mapping[str, Any] | None = None,
        models: Iterable[str] = ("fake-model",),
        host: str = "127.0.0.1",
        port: int = 0,
        record_requests: bool = True,
        backlog: int = 4096,
    ) -> None:
        self.latency = latency
        """Seconds every answer waits before it is sent (unless a scripted item says)."""
        self.responder: Responder = responder or responder_for_mode(
            mode, tool_arguments=tool_arguments
        )
        """Answers requests when the script is empty."""
        self.requests: list[JSONObject] = []
        """Parsed JSON bodies of the chat requests received, in order."""
        self.request_count = 0
        """Chat requests received (including rejected ones)."""
        self.in_flight = 0
        """Chat requests being answered right now."""
        self.max_in_flight = 0
        """The most chat requests ever answered at the same time."""
        self.record_requests = record_requests
        self._script: deque[ScriptItem] = deque(script)
        self._models = tuple(models)
        self._host = host
        self._port = port
        self._backlog = backlog
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._bound_port: int | None = None

    # ---- scripting and records --------------------------------------------------------

    def script(self, *items: ScriptItem) -> None:
        """Queue answers or failures; each chat request consumes one, in order."""
        self._script.extend(items)

    @property
    def pending(self) -> int:
        """How many scripted items are still queued."""
        return len(self._script)

    def reset(self) -> None:
        """Forget the script and the records (counts, requests)."""
        self._script.clear()
        self.requests.clear()
        self.request_count = 0
        self.max_in_flight = self.in_flight

    # ---- lifecycle --------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._bound_port is None:
            raise FakeServerError("the fake LLM server is not started; use `async with`")
        return self._bound_port

    @property
    def url(self) -> str:
        """The server root, e.g. 'http://127.0.0.1:8123'."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give a client, e.g. 'http://127.0.0.1:8123/v1'."""
        return f"{self.url}/v1"

    async def start(self) -> None:
        """Start listening (on a random free port unless one was given)."""
        if self._runner is not None:
            raise FakeServerError("the fake LLM server is already started")
        app = web.Application()
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_GRACE_S,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, backlog=self._backlog)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise FakeServerError(
                f"fake LLM server cannot listen on {self._host}:{self._port}: {exc}"
            ) from exc
        self._runner = runner
        self._bound_port = _bound_port(runner)

    async def close(self) -> None:
        """Stop the server at once: requests still being answered get their connection
        closed (hanging and slow ones included)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in self._handlers:
            task.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- handlers ---------------------------------------------------------------------

    async def _handle_models(self, request: web.Request) -> web.Response:
        return web.Response(
            body=models_body(self._models, int(time.time())), content_type="application/json"
        )

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        self.request_count += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        # aiohttp runs each request in its own task; `close` cancels those still running.
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1
            self._handlers.discard(task)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response(
                ErrorReply.bad_request("We could not parse the JSON body of your request.")
            )
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            return error_response(
                ErrorReply.bad_request("'messages' is a required property", param="messages")
            )
        if self.record_requests:
            self.requests.append(data)
        item = await self._next_item(data)
        stream = data.get("stream") is True
        if isinstance(item, Reply):
            await self._wait(item.latency)
            completion = self._completion(data, item)
            if stream:
                return await send_stream(request, completion, data)
            return web.Response(body=completion.body(), content_type="application/json")
        if isinstance(item, ErrorReply):
            await self._wait(item.latency)
            return error_response(item)
        await self._wait(None)
        partial = self._completion(data, Reply(_PARTIAL_TEXT)) if stream else None
        return await send_failure(request, item, data, partial)

    async def _next_item(
        self, data: JSONObject
    ) -> Reply | ErrorReply | Hang | MalformedReply | DropConnection:
        if self._script:
            item = self._script.popleft()
        else:
            produced = self.responder(data)
            item = await produced if inspect.isawaitable(produced) else produced
        return Reply(item) if isinstance(item, str) else item

    async def _wait(self, latency: float | None) -> None:
        seconds = self.latency if latency is None else latency
        if seconds > 0:
            await asyncio.sleep(seconds)

    def _completion(self, data: JSONObject, reply: Reply) -> Completion:
        calls = [
            ResolvedCall(
                call.id or f"call_{next(self._ids)}",
                call.name,
                call.arguments
                if isinstance(call.arguments, str)
                else orjson.dumps(dict(call.arguments)).decode(),
            )
            for call in reply.tool_calls
        ]
        return Completion(
            id=f"chatcmpl-{next(self._ids)}",
            created=int(time.time()),
            model=str(data.get("model") or self._models[0]),
            reply=reply,
            calls=calls,
            prompt_tokens=estimate_prompt_tokens(data),
        )


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise FakeServerError(f"fake LLM server has no TCP address: {runner.addresses!r}")
