"""`/api/ws`: chat over a WebSocket, with the same events as the SSE endpoints.

Connect with a token (`/api/ws?token=<JWT or API key>`; `access_token=` or an
`Authorization` header work too). Then send JSON messages:

- `{"type": "run", "conversation_id": "...", "input": "text" | [messages], "agent_id"?}`
  starts a run (one at a time per socket); its events arrive as
  `{"seq": n, "type": "<event type>", "data": {...}}`, exactly the SSE events;
- `{"type": "cancel"}` cancels the active run (it ends with `run_completed`, status
  `cancelled`).

Problems with a message get `{"type": "error", "data": {"type", "message", "agent": null}}`
(no `seq`: they are not part of a run). Closing the socket cancels the active run.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from ...errors import AgentguildError, ConfigError
from ...runtime.limits import QuotaExceededError, RunLimitError
from ...runtime.run_registry import RunHandle
from ...runtime.runner import ConversationBusyError, NoAgentError
from ...runtime.services import Services
from ...security import Permission, Principal
from ...store.errors import NotFoundError
from ..deps import get_authenticator, get_services
from ..errors import ApiError
from ..ratelimit import RateLimiter
from ..sse import aclose
from .conversations import visible_conversation
from .runs import RunCreate, parse_input

router = APIRouter(tags=["runs"])

_POLICY_VIOLATION = 1008
_ERROR_TYPES: dict[type[Exception], str] = {
    RunLimitError: "too_many_active_runs",
    QuotaExceededError: "quota_exceeded",
    NoAgentError: "no_agent",
    ConfigError: "invalid_configuration",
    ConversationBusyError: "conversation_busy",
}
"""The error `type` of problems starting a run (as the HTTP API names them)."""


class _RunMessage(RunCreate):
    """A `run` message: a run's body plus its conversation."""

    type: str
    conversation_id: str


@router.websocket("/api/ws")
async def chat_socket(websocket: WebSocket) -> None:
    """Chat with agents over one WebSocket (see the module documentation)."""
    principal = await _authenticate(websocket)
    if principal is None:
        await websocket.close(_POLICY_VIOLATION, "authentication required: pass ?token=...")
        return
    await websocket.accept()
    session = _Session(websocket, get_services(websocket), principal)
    try:
        await session.serve()
    except WebSocketDisconnect:
        pass
    finally:
        await session.stop()


async def _authenticate(websocket: WebSocket) -> Principal | None:
    params = websocket.query_params
    token = params.get("token") or params.get("access_token")
    header = websocket.headers.get("authorization", "")
    if token is None and header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token:
        return None
    return await get_authenticator(websocket).authenticate(token)


class _Session:
    """One socket: reads commands, runs one run at a time, forwards its events."""

    def __init__(self, websocket: WebSocket, services: Services, principal: Principal) -> None:
        self.websocket = websocket
        self.services = services
        self.principal = principal
        self.handle: RunHandle | None = None
        self.forwarder: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()

    async def serve(self) -> None:
        while True:
            try:
                message = await self.websocket.receive_json()
            except (ValueError, KeyError):
                await self.error("bad_request", "messages must be JSON objects")
                continue
            if not isinstance(message, dict):
                await self.error("bad_request", "messages must be JSON objects")
            elif message.get("type") == "run":
                await self.start(message)
            elif message.get("type") == "cancel":
                if self.handle is not None:
                    self.handle.cancel()
            else:
                await self.error("bad_request", "unknown message type; use 'run' or 'cancel'")

    async def start(self, message: dict[str, Any]) -> None:
        if self.handle is not None and not self.handle.done:
            await self.error("conflict", "a run is active on this socket; cancel it first")
            return
        try:
            self.handle = await self._start(message)
        except ApiError as exc:
            await self.error(exc.type, exc.message)
            return
        except NotFoundError as exc:
            await self.error("not_found", str(exc))
            return
        except AgentguildError as exc:
            await self.error(_ERROR_TYPES.get(type(exc), "error"), str(exc))
            return
        if self.forwarder is not None:
            await self.forwarder  # the previous run's events are all sent: it has ended
        self.forwarder = asyncio.create_task(self.forward(self.handle))

    async def _start(self, message: dict[str, Any]) -> RunHandle:
        principal = self.principal
        if not principal.can(Permission.AGENTS_EXECUTE):
            raise ApiError(403, "forbidden", f"role {principal.role.value!r} may not run agents")
        limiter = cast("RateLimiter", self.websocket.app.state.rate_limiter)
        limiter.check(principal)
        try:
            body = _RunMessage.model_validate(message)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ApiError(422, "validation_error", problems) from None
        messages = parse_input(body.input, self.services.settings)
        async with self.services.db.repos(principal) as repos:
            conversation = await visible_conversation(repos, principal, body.conversation_id)
        return await self.services.runner.start(
            principal,
            conversation.id,
            messages,
            agent_id=body.agent_id or conversation.agent_id,
            mode="stream",
            multitask=body.multitask,
        )

    async def forward(self, handle: RunHandle) -> None:
        events = handle.events()
        try:
            async for seq, event in events:
                await self.send({"seq": seq, **event})
        finally:
            await aclose(events)

    async def error(self, kind: str, message: str) -> None:
        await self.send(
            {"type": "error", "data": {"type": kind, "message": message, "agent": None}}
        )

    async def send(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.websocket.send_json(payload)

    async def stop(self) -> None:
        """The socket is gone: stop forwarding, which cancels the active run."""
        if self.forwarder is not None:
            self.forwarder.cancel()
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
            ):
                await self.forwarder
        if self.handle is not None and not self.handle.done:
            self.handle.cancel()
            await self.handle.wait()
