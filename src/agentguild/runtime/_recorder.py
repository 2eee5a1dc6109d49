"""Persisting a run's events as they happen, then publishing them to its followers.

Each step is one short transaction, committed before the event is published, so whatever
a client has seen is stored: complete messages only (text deltas are never stored; the
message they add up to is), a tool call's row before it executes and its outcome after,
usage as each model call reports it. If the process dies mid-run, the record holds every
message completed so far and nothing partial.

Every transaction also fences the run (`RunRepo.fence`): a process that stalled long
enough to be thought dead, whose run was recovered or claimed elsewhere meanwhile, gets
`NotRunOwnerError` at its next write, which lands nothing; the runner then stops the run
here without touching its record (`finished` publishes nothing either).
"""

from __future__ import annotations

import logging

from ..security import Principal
from ..store.db import Database
from ..store.errors import NotRunOwnerError
from ..store.repositories import TenantRepos
from ..store.usage_writer import UsageWriter
from ..types import (
    Event,
    MessageEvent,
    RunResult,
    StopReason,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
    UsageEvent,
)
from .event_codec import RunCompleted, RunStarted, RunStatus, WireEvent, encode_event
from .run_registry import RunHandle

logger = logging.getLogger(__name__)

_STOPPED_TOOL_RESULT = "Error: the run stopped before this tool call finished."
TAKEN_OVER_ERROR = "taken over by another process: this one missed its heartbeats"


class RunRecorder:
    """Stores one run's events and publishes them to its `RunHandle`'s log."""

    def __init__(
        self,
        db: Database,
        principal: Principal,
        handle: RunHandle,
        owner: str,
        usage_writer: UsageWriter | None = None,
    ) -> None:
        self.db = db
        self.principal = principal
        self.handle = handle
        self.owner = owner
        """The process executing the run (`runs.owner`); every write checks it still is."""
        self.usage = Usage()
        self._usage_writer = usage_writer
        self._unsaved_usage = Usage()  # saved with the next message: one transaction less
        self._open_calls: dict[str, str] = {}  # model's call id -> tool_calls row id

    async def started(self) -> None:
        """Mark the run `running` and publish `run_started`."""
        handle = self.handle
        async with self.db.repos(self.principal) as repos:
            await repos.runs.set_status(handle.run_id, "running")
            await repos.runs.fence(handle.run_id, self.owner)
        handle.status = "running"
        self._publish(RunStarted(handle.run_id, handle.conversation_id, handle.agent))

    @staticmethod
    def stores(event: Event) -> bool:
        """Whether recording the event writes to the database."""
        return isinstance(event, MessageEvent | ToolCallEvent | ToolResultEvent)

    async def record(self, event: Event) -> None:
        """Store the event (if it changes the record), then publish it."""
        if isinstance(event, MessageEvent):
            await self._message(event)
        elif isinstance(event, ToolCallEvent):
            await self._tool_call(event)
        elif isinstance(event, ToolResultEvent):
            await self._tool_result(event)
        elif isinstance(event, UsageEvent):
            self._usage(event)
        elif isinstance(event, RunResult):
            self.handle.result = event
        else:  # text deltas, errors, team and task progress: published, not stored
            self._publish(event)

    async def finished(self, status: RunStatus, error: str | None = None) -> None:
        """Close open tool calls, store the final status, publish `run_completed`."""
        handle = self.handle
        try:
            async with self.db.repos(self.principal) as repos:
                await repos.runs.fence(handle.run_id, self.owner)  # first: `interrupted` clears it
                for row_id in self._open_calls.values():
                    await repos.tool_calls.finish(row_id, _STOPPED_TOOL_RESULT, True, None)
                await self._save_usage(repos)
                await repos.runs.set_status(handle.run_id, status, error=error)
        except NotRunOwnerError:
            # Its record and its stream belong to whoever took it over: add nothing.
            logger.warning("run.taken_over", extra={"run_id": handle.run_id})
            handle.log.abandon()
            handle.finish("interrupted", error=TAKEN_OVER_ERROR)
            return
        self._open_calls.clear()
        result = handle.result
        if result is not None:
            completed = RunCompleted.from_result(handle.run_id, status, result)
        else:
            stop: StopReason = "cancelled" if status in ("cancelled", "interrupted") else "error"
            output = next((m.text for m in reversed(handle.messages) if m.role == "assistant"), "")
            completed = RunCompleted(handle.run_id, status, output, self.usage, stop)
        self._publish(completed)
        handle.finish(status, error=error)

    async def _message(self, event: MessageEvent) -> None:
        async with self.db.repos(self.principal) as repos:
            rows = await repos.messages.append(
                self.handle.conversation_id, [event.message], run_id=self.handle.run_id
            )
            await self._save_usage(repos)
            await repos.runs.fence(self.handle.run_id, self.owner)
        self.handle.messages.append(event.message)
        encoded = encode_event(event)
        encoded["data"]["seq"] = rows[0].seq
        self.handle.log.append(encoded)

    async def _tool_call(self, event: ToolCallEvent) -> None:
        async with self.db.repos(self.principal) as repos:
            row = await repos.tool_calls.start(
                self.handle.run_id, self.handle.conversation_id, event.call
            )
            await repos.runs.fence(self.handle.run_id, self.owner)
        self._open_calls[event.call.id] = row.id
        self._publish(event)

    async def _tool_result(self, event: ToolResultEvent) -> None:
        row_id = self._open_calls.pop(event.result.call.id, None)
        if row_id is not None:
            result = event.result
            async with self.db.repos(self.principal) as repos:
                await repos.tool_calls.finish(
                    row_id, result.content, result.is_error, result.duration_s * 1000
                )
                await repos.runs.fence(self.handle.run_id, self.owner)
        self._publish(event)

    def _usage(self, event: UsageEvent) -> None:
        usage = event.usage
        self.usage = self.usage + usage
        self._unsaved_usage = self._unsaved_usage + usage
        if self._usage_writer is not None:
            self._usage_writer.record(
                self.principal,
                model=event.model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                run_id=self.handle.run_id,
            )
        self._publish(event)

    async def _save_usage(self, repos: TenantRepos) -> None:
        usage, self._unsaved_usage = self._unsaved_usage, Usage()
        if usage.total_tokens:
            await repos.runs.add_usage(
                self.handle.run_id, usage.prompt_tokens, usage.completion_tokens
            )

    def _publish(self, event: WireEvent) -> None:
        self.handle.log.append(encode_event(event))
