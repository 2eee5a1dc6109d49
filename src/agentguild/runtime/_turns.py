"""Runs on one conversation take turns: the `multitask` policy of a new run.

A conversation has at most one run executing at a time, so its transcript never mixes
two runs' messages. A run started while others are active (queued or running) on the
same conversation follows the request's `multitask` policy:

- `enqueue` (default): the run is stored `queued` with its input aside
  (`runs.pending_input`); when every run created before it has ended, its input is added
  to the conversation and it starts.
- `reject`: the request fails with `ConversationBusyError` (HTTP 409).
- `interrupt`: the active runs are cancelled (wherever they execute), then the run starts.

Creating a run first touches the conversation row, which serialises run creation on one
conversation across instances (a row lock on PostgreSQL, the write lock on SQLite), so
two concurrent requests cannot both see an idle conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Literal, TypeAlias

from .._aio import poll_until
from ..errors import AgentguildError
from ..security import Principal
from ..store.db import Database
from ..store.errors import NotFoundError
from ..store.models import Run
from ..types import Message
from ._history import close_open_tool_calls
from .catalog import CatalogEntry
from .event_codec import TERMINAL_STATUSES
from .limits import RunLimits
from .run_registry import RunHandle, RunMode

__all__ = ["ConversationBusyError", "MultitaskPolicy", "store_run", "wait_until_ended"]

MultitaskPolicy: TypeAlias = Literal["reject", "enqueue", "interrupt"]


class ConversationBusyError(AgentguildError):
    """`multitask="reject"` and the conversation already has an active run."""

    def __init__(self, message: str, run_ids: list[str]) -> None:
        super().__init__(message)
        self.run_ids = run_ids
        """The active runs of the conversation."""


async def wait_until_ended(
    db: Database,
    principal: Principal,
    run_id: str,
    live: Callable[[str], RunHandle | None],
    *,
    timeout_s: float | None = None,
) -> bool:
    """Wait until the run has ended; False if `timeout_s` passed first.

    A run executing in this process (`live`) is awaited; one executing elsewhere is
    watched in the store (polling with backoff up to half a second).
    """
    handle = live(run_id)
    if handle is not None:
        try:
            await asyncio.wait_for(handle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def ended() -> bool:
        async with db.repos(principal) as repos:
            run = await repos.runs.get(run_id)
        return run is None or run.status in TERMINAL_STATUSES

    return await poll_until(ended, timeout_s=timeout_s)


async def store_run(
    db: Database,
    principal: Principal,
    conversation_id: str,
    input_messages: Sequence[Message],
    entry: CatalogEntry,
    mode: RunMode,
    multitask: MultitaskPolicy,
    limits: RunLimits,
    *,
    owner: str | None,
    starting: int,
) -> tuple[Run, list[Message] | None]:
    """Store a new run in one transaction; and, if the conversation is idle, its input:
    then also the history to run on (None: the run waits for its turn, its input set
    aside). `starting` runs of the tenant are being stored meanwhile in this process.

    Raises `NotFoundError`, `RunLimitError` or (`reject`) `ConversationBusyError`.
    """
    async with db.repos(principal) as repos:
        # Touching the conversation first serialises run creation on it.
        if not await repos.conversations.touch(conversation_id):
            raise NotFoundError(f"conversation {conversation_id!r} not found")
        # Counted in the store: every instance's and worker's runs.
        active = await repos.runs.active_by_conversation()
        limits.check_active(len(active) + starting)
        busy = [run_id for run_id, conversation in active if conversation == conversation_id]
        if busy and multitask == "reject":
            raise ConversationBusyError(
                f"conversation {conversation_id!r} has an active run ({', '.join(busy)}); "
                "wait for it, or start the run with multitask 'enqueue' or 'interrupt'",
                busy,
            )
        run = await repos.runs.create(
            conversation_id,
            entry.id,
            entry.version,
            principal.user_id,
            mode,
            owner=owner,
            pending_input=[m.to_openai() for m in input_messages] if busy else None,
        )
        if busy:
            return run, None
        await repos.messages.append(conversation_id, list(input_messages), run_id=run.id)
        history = await repos.messages.history(conversation_id)
    return run, close_open_tool_calls(history)
