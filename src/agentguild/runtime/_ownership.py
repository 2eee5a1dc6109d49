"""Where runs execute, across instances: owners, cancel requests, recovery, turns.

Each run names the instance executing it (`runs.owner`, this process's `owner` id). A
cancel request for a run executing elsewhere travels over the cancel channel; a run no
live instance executes is marked at once. Runs whose owner died are `interrupted` by
`recover`, which every live instance runs on each heartbeat sweep. Runs on one
conversation take turns (`take_turn`, see `_turns`).
"""

from __future__ import annotations

import logging
import time

from .._aio import unbroken
from ..security import Principal
from ..store.db import Database
from ..store.errors import NotFoundError
from ..store.models import Run
from ..store.repositories.runs import mark_interrupted, orphaned
from ..types import Message
from ._history import close_open_tool_calls
from ._turns import wait_until_ended
from .cancels import CancelChannel, LocalCancels
from .event_codec import TERMINAL_STATUSES
from .instances import InstanceHeartbeat, live_instance_ids, new_instance_id
from .run_registry import RunHandle, RunRegistry

logger = logging.getLogger(__name__)


class RunOwnership:
    """The runner's view of the other instances (see the module documentation)."""

    def __init__(
        self,
        db: Database,
        registry: RunRegistry,
        *,
        instance: InstanceHeartbeat | None,
        cancels: CancelChannel | None,
        cancel_wait_s: float,
        queue_owns_background: bool,
    ) -> None:
        self.db = db
        self.registry = registry
        self.instance = instance
        """This process's heartbeat; without one, no other process counts as alive."""
        self.owner = instance.id if instance is not None else new_instance_id()
        """The id runs executing here are owned by."""
        self.cancels: CancelChannel = cancels if cancels is not None else LocalCancels()
        self.cancel_wait_s = cancel_wait_s
        self.stale_after_s = instance.stale_after_s if instance is not None else 30.0
        self.queue_owns_background = queue_owns_background
        """Background runs belong to queue workers (recovery leaves them to the queue)."""

    def live(self, run_id: str) -> RunHandle | None:
        """The run if it executes (or recently executed) in this process."""
        return self.registry.lookup(run_id)

    async def cancel_elsewhere(self, principal: Principal, run: Run) -> Run:
        """Stop a run not executing in this process; the stored run afterwards.

        If no live instance executes it (it waits for a queue worker, or its process
        died), it is marked `cancelled` at once; otherwise its owner is asked to stop it,
        and waited for up to `cancel_wait_s`.
        """
        run_id = run.id
        if run.status not in TERMINAL_STATUSES and self.instance is not None:
            await self.instance.sweep()  # its owner may have died (seen at once on this host)
            run = await self._get(principal, run_id) or run
        deadline = time.monotonic() + self.cancel_wait_s
        while run.status not in TERMINAL_STATUSES:
            async with self.db.repos(principal) as repos:
                marked = await repos.runs.cancel_unowned(
                    run_id, live_instance_ids(self.stale_after_s)
                )
            await self.cancels.publish(run_id)  # also stops a worker taking it up just now
            if marked is not None:
                return marked
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await wait_until_ended(self.db, principal, run_id, self.live, timeout_s=min(1, left))
            run = await self._get(principal, run_id) or run
        return run

    async def listen(self) -> None:
        """Take cancel requests for the runs executing here from every instance."""
        await self.cancels.listen(self._cancel_requested)

    async def recover(self) -> int:
        """Mark the queued and running runs no live instance executes `interrupted`; how
        many (background runs are left to the queue when it owns them)."""
        scope = orphaned(live_instance_ids(self.stale_after_s))
        if self.queue_owns_background:
            scope = scope & (Run.mode != "background")
        async with self.db.session() as session:
            count = await mark_interrupted(session, scope, statuses=("queued", "running"))
        if count:
            logger.warning("runs.interrupted", extra={"count": count})
        return count

    async def take_turn(self, handle: RunHandle, principal: Principal) -> list[Message]:
        """Wait until the runs whose turn comes first (see `RunRepo.ahead_of`) have ended,
        then add this run's input to the conversation; the history to run on."""
        while True:
            async with self.db.repos(principal) as repos:
                run = await repos.runs.get(handle.run_id)
                if run is None:
                    raise NotFoundError(f"run {handle.run_id!r} not found")
                ahead = await repos.runs.ahead_of(run)
            if ahead:
                await wait_until_ended(self.db, principal, ahead[0].id, self.live)
                continue
            history = await unbroken(self._begin_turn(principal, run))
            if history is not None:
                return history

    async def _begin_turn(self, principal: Principal, run: Run) -> list[Message] | None:
        """Under the conversation's lock: if no run is ahead of `run` any more, add its
        input to the conversation and return the history; else None (wait again)."""
        conversation_id = run.conversation_id
        async with self.db.repos(principal) as repos:
            await repos.conversations.touch(conversation_id)  # the lock run creation takes
            if await repos.runs.ahead_of(run):
                return None
            pending = await repos.runs.take_pending_input(run.id)
            if pending:
                messages = [Message.from_openai(item) for item in pending]
                await repos.messages.append(conversation_id, messages, run_id=run.id)
            history = await repos.messages.history(conversation_id)
        return close_open_tool_calls(history)

    async def _get(self, principal: Principal, run_id: str) -> Run | None:
        async with self.db.repos(principal) as repos:
            return await repos.runs.get(run_id)

    def _cancel_requested(self, run_id: str) -> None:
        handle = self.registry.lookup(run_id)
        if handle is not None:
            handle.cancel()
