"""Runs of agents on conversations: start (stream | wait | background), follow, cancel.

- `POST /api/conversations/{id}/runs` `{"input": "text" | [OpenAI messages], "mode",
  "agent_id", "multitask"}`: `stream` answers with the run's events over SSE (leaving
  cancels the run), `wait` with `200 {run, output, messages}` once it ends (leaving
  cancels it), `background` at once with `202 {run}` (the run goes on without the
  client). If the conversation has an active run, `multitask` decides: `enqueue`
  (default: the run waits its turn), `reject` (409 `conversation_busy`) or `interrupt`
  (the active runs are cancelled first).
- `GET /api/runs/{id}`: the run (status, usage, timestamps).
- `GET /api/runs/{id}/stream`: its events over SSE; with `Last-Event-ID` (or
  `?last_event_id=`) only those after it. Following a streamed run keeps it alive.
- `GET /api/runs/{id}/join`: wait until it has ended (wherever it executes); answers
  like a `wait` run: `{run, output, messages}`. Leaving does not cancel the run.
- `POST /api/runs/{id}/cancel`: stop it; answers with the run once it has stopped.

Users and viewers see only their own runs (like conversations); others answer 404.
See `docs/api-runs.md` for the event format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ...config import Settings
from ...runtime.limits import QuotaExceededError
from ...runtime.run_registry import RunHandle
from ...runtime.runner import ConversationBusyError, MultitaskPolicy, Runner
from ...runtime.views import run_view
from ...security import Permission, Principal
from ...store.errors import NotFoundError
from ...store.models import Run
from ...types import JSONObject, Message
from ..deps import ServicesDep, check_message_size, require
from ..errors import ApiError, register_error
from ..sse import (
    ClientDisconnectedError,
    EventStreamResponse,
    aclose,
    format_event,
    last_event_id,
    until_disconnected,
)
from ._params import ID_PATTERN, IdPath
from .conversations import sees_all_conversations, visible_conversation

router = APIRouter(tags=["runs"])
register_error(QuotaExceededError, 429, "quota_exceeded")
register_error(ConversationBusyError, 409, "conversation_busy")

_Execute = Annotated[Principal, Depends(require(Permission.AGENTS_EXECUTE))]
_Read = Annotated[Principal, Depends(require(Permission.DATA_READ))]
_Services = ServicesDep

MAX_INPUT_MESSAGES = 200
"""Most messages one run's input may hold."""


class RunCreate(BaseModel):
    """A run to start: the new input, how to serve it, and optionally which agent."""

    model_config = ConfigDict(extra="forbid")

    input: str | Annotated[list[dict[str, JsonValue]], Field(min_length=1)]
    """The user's text, or OpenAI-format messages to add to the conversation."""
    mode: Literal["stream", "wait", "background"] = "stream"
    agent_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    """The agent (id or name); default: the conversation's agent."""
    multitask: MultitaskPolicy = "enqueue"
    """If the conversation already has an active run: `enqueue` (this run starts when
    the earlier ones have ended), `reject` (409) or `interrupt` (cancel them first)."""


def parse_input(raw: str | list[dict[str, Any]], settings: Settings) -> list[Message]:
    """A run's input as messages: 422 if malformed, 413 if a message is too long."""
    if isinstance(raw, str):
        messages = [Message.user(raw)]
    else:
        if len(raw) > MAX_INPUT_MESSAGES:
            raise ApiError(
                422, "validation_error", f"input holds more than {MAX_INPUT_MESSAGES} messages"
            )
        try:
            messages = [Message.from_openai(item) for item in raw]
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(
                422, "validation_error", f"input is not a list of OpenAI chat messages ({exc})"
            ) from None
        bad = [m.role for m in messages if m.role not in ("system", "user", "assistant", "tool")]
        if bad:
            raise ApiError(422, "validation_error", f"unknown message role(s): {bad}")
    for message in messages:
        check_message_size(message.text, settings)
    return messages


@router.post(
    "/api/conversations/{conversation_id}/runs",
    summary="Run an agent on a conversation",
    responses={
        200: {"description": "`wait`: the finished run, its output and messages"},
        202: {"description": "`background`: the queued run"},
    },
)
async def create_run(
    conversation_id: IdPath,
    body: RunCreate,
    request: Request,
    principal: _Execute,
    services: _Services,
) -> Response:
    """Start a run; see the module documentation for the three modes."""
    messages = parse_input(body.input, services.settings)
    async with services.db.repos(principal) as repos:
        conversation = await visible_conversation(repos, principal, conversation_id)
    try:
        handle = await services.runner.start(
            principal,
            conversation_id,
            messages,
            agent_id=body.agent_id or conversation.agent_id,
            mode=body.mode,
            multitask=body.multitask,
        )
    except NotFoundError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except ConversationBusyError as exc:
        details = {"active_runs": exc.run_ids}
        raise ApiError(409, "conversation_busy", str(exc), details) from None
    headers = {"Location": f"/api/runs/{handle.run_id}"}
    if body.mode == "stream":
        frames = sse_frames(handle.events())
        return EventStreamResponse(frames, headers=headers, on_close=handle.abandon)
    if body.mode == "background":
        return JSONResponse({"run": handle.view}, status_code=202, headers=headers)
    try:
        await until_disconnected(request, handle.wait())
    except ClientDisconnectedError:
        handle.cancel()
        await handle.wait()
        return Response(status_code=499)
    return JSONResponse(await _wait_result(services.runner, principal, handle), headers=headers)


@router.get("/api/runs/{run_id}", summary="Get a run")
async def get_run(run_id: IdPath, principal: _Read, services: _Services) -> JSONObject:
    """The run: status, mode, agent, usage, error, timestamps."""
    return run_view(await _visible_run(services.runner, principal, run_id))


@router.get(
    "/api/runs/{run_id}/stream",
    summary="Follow a run's events (SSE)",
    response_class=EventStreamResponse,
)
async def stream_run(
    run_id: IdPath, request: Request, principal: _Read, services: _Services
) -> Response:
    """The run's events after `Last-Event-ID`, live until it ends (replayed if it has)."""
    await _visible_run(services.runner, principal, run_id)
    events = await services.runner.follow(principal, run_id, last_event_id(request))
    if events is None:
        raise ApiError(404, "not_found", f"run {run_id!r} not found")
    return EventStreamResponse(sse_frames(events))


@router.get("/api/runs/{run_id}/join", summary="Wait for a run to end")
async def join_run(
    run_id: IdPath, request: Request, principal: _Read, services: _Services
) -> Response:
    """Wait until the run has ended, wherever it executes; the run, its output and the
    messages it added, like a `wait` run's answer. Leaving does not cancel the run."""
    await _visible_run(services.runner, principal, run_id)
    try:
        joined = await until_disconnected(request, services.runner.join(principal, run_id))
    except ClientDisconnectedError:
        return Response(status_code=499)
    if joined is None:
        raise ApiError(404, "not_found", f"run {run_id!r} not found")
    run, output, messages = joined
    return JSONResponse({"run": run_view(run), "output": output, "messages": messages})


@router.post("/api/runs/{run_id}/cancel", summary="Cancel a run")
async def cancel_run(run_id: IdPath, principal: _Execute, services: _Services) -> JSONObject:
    """Stop the run (its model and tool calls too); the run once it has stopped."""
    await _visible_run(services.runner, principal, run_id)
    run = await services.runner.cancel(principal, run_id)
    if run is None:
        raise ApiError(404, "not_found", f"run {run_id!r} not found")
    return run_view(run)


async def sse_frames(events: AsyncIterator[tuple[int, JSONObject]]) -> AsyncIterator[bytes]:
    """A run's events as SSE messages (`id`, `event`, `data`); closes `events` when done."""
    try:
        async for seq, event in events:
            yield format_event(seq, event["type"], event["data"])
    finally:
        await aclose(events)


async def _visible_run(runner: Runner, principal: Principal, run_id: str) -> Run:
    run = await runner.get(principal, run_id)
    if run is None or not (sees_all_conversations(principal) or run.user_id == principal.user_id):
        raise ApiError(404, "not_found", f"run {run_id!r} not found")
    return run


async def _wait_result(runner: Runner, principal: Principal, handle: RunHandle) -> JSONObject:
    run = await runner.get(principal, handle.run_id)
    result = handle.result
    return {
        "run": run_view(run) if run is not None else handle.view,
        "output": result.output if result is not None else "",
        "messages": [message.to_openai() for message in handle.messages],
    }
