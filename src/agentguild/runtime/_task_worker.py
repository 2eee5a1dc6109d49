"""The tasks a queue worker runs for `task.execute` jobs: claimed, run, stopped, handed back."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Select

from ..agents.termination import ExternalStop
from ..errors import AgentguildError, TaskTakenOverError
from ..store.task_store import SqlTaskStore
from ..tasks import PlannedTeam, Task, TaskEventObserver
from ..types import TaskStatus
from ._task_jobs import TaskInterruptedError

logger = logging.getLogger(__name__)

OWNER_POLL_S = 1.0
"""How often a worker looks again at a task still running on a live process."""


@dataclass(slots=True)
class _Live:
    """One task running here."""

    stop: ExternalStop
    run: asyncio.Task[None]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the job's handler is done with it (finished, or handed back)."""


class QueuedTaskRuns:
    """The tasks this process runs for queue jobs (see `TaskService.execute`).

    `claim` takes a task: a pending one, or one whose process died (`running`, owned by
    no live instance). A task still running on a live process (a worker whose heartbeat
    has not aged yet) is waited for. `run` runs it from its stored state and persists
    every change. `stop` ends one as cancelled (a cancel request); `interrupt` stops them
    all unfinished (the worker is shutting down): each is stored `pending` again, without
    owner, and its job ends with `TaskInterruptedError`, to be delivered again.

    A task whose store refuses a save (this worker was thought dead, and the task was
    recovered or taken over elsewhere) stops here at once, storing nothing more; its job
    ends with `TaskInterruptedError` too, leaving the job to whoever has it now.
    """

    def __init__(
        self,
        store: SqlTaskStore,
        live_owners: Callable[[], Select[str] | None],
        on_event: TaskEventObserver,
        *,
        poll_s: float = OWNER_POLL_S,
    ) -> None:
        self.store = store
        self.live_owners = live_owners
        """A fresh subquery of the live instances' ids (None: no other process is live)."""
        self.on_event = on_event
        self.poll_s = poll_s
        self._live: dict[str, _Live] = {}
        self._interrupting = False

    async def claim(self, tenant_id: str, task_id: str) -> Task | None:
        """Make this process run the task (stored `running`, owned by it); the task, or
        None if it has finished (or does not exist)."""
        waiting = False
        while not self._interrupting:
            task = await self.store.take(
                task_id, tenant_id=tenant_id, live_owners=self.live_owners()
            )
            if task is not None:
                return task
            stored = await self.store.get(task_id, tenant_id=tenant_id)
            if stored is None or stored.finished:
                return None
            if not waiting:
                logger.info("task.owner_live", extra={"task_id": task_id})
                waiting = True
            await asyncio.sleep(self.poll_s)  # until its owner finishes or is seen dead
        raise TaskInterruptedError(f"task {task_id} was not started: the worker is shutting down")

    async def run(self, task: Task, team: PlannedTeam, context: contextvars.Context) -> TaskStatus:
        """Run a claimed task (in `context`) until it ends; its final status.

        Raises `TaskInterruptedError` if `interrupt` stopped it or another process took it
        over (the store refused a save), and an error (the job is retried) if it ended
        without its end being stored.
        """
        if self._interrupting:
            await self._release(task)
            raise TaskInterruptedError(
                f"task {task.id} was not started: the worker is shutting down"
            )
        stop = ExternalStop()
        drive = self._drive(task, team.with_store(self.store), stop)
        live = _Live(
            stop, asyncio.create_task(drive, name=f"agentguild-{task.id}", context=context)
        )
        self._live[task.id] = live
        try:
            await live.run
        except asyncio.CancelledError:
            # The worker is shutting down (`interrupt`), or the job's handler was cancelled.
            await asyncio.shield(self._release(task))
            current = asyncio.current_task()
            if current is not None and not current.cancelling():
                raise TaskInterruptedError(
                    f"task {task.id} was interrupted by a shutdown"
                ) from None
            raise
        except TaskTakenOverError:
            raise _taken_over(task) from None
        except Exception:  # the team recorded the failure on the task
            logger.exception("task.crashed", extra={"task_id": task.id})
        finally:
            del self._live[task.id]
            live.done.set()
        return await self._outcome(task)

    async def fail(self, task: Task, error: str) -> TaskStatus:
        """End a claimed task `failed` without running it (its team cannot be built here);
        its status. `TaskInterruptedError` if another process took it over meanwhile."""
        task.status, task.error, task.finished_at = "failed", error, time.time()
        try:
            await self.store.save(task)
        except TaskTakenOverError:
            raise _taken_over(task) from None
        return task.status

    def stop(self, task_id: str, reason: str = "cancelled on request") -> bool:
        """Stop the task if it runs here (it ends `cancelled`); whether it does."""
        live = self._live.get(task_id)
        if live is None:
            return False
        live.stop.stop(reason)
        return True

    async def wait(self, task_id: str) -> None:
        """Wait until the task no longer runs here."""
        live = self._live.get(task_id)
        if live is not None:
            await live.done.wait()

    async def interrupt(self) -> None:
        """Stop every task running here unfinished and hand them back (see the class);
        tasks claimed from now on are handed back at once."""
        self._interrupting = True
        running = list(self._live.values())
        for live in running:
            live.run.cancel()
        for live in running:
            await live.done.wait()

    async def _drive(self, task: Task, team: PlannedTeam, stop: ExternalStop) -> None:
        async for event in team.run(task=task, stop=stop):
            outcome = self.on_event(task, event)
            if inspect.isawaitable(outcome):
                await outcome

    async def _release(self, task: Task) -> None:
        if await self.store.release_running(task.id, tenant_id=task.tenant_id):
            logger.info("task.released", extra={"task_id": task.id})

    async def _outcome(self, task: Task) -> TaskStatus:
        stored = await self.store.get(task.id, tenant_id=task.tenant_id)
        if stored is None:  # deleted meanwhile
            return task.status
        if not stored.finished:  # its end was not stored (the database failed?)
            await self._release(task)
            raise AgentguildError(f"task {task.id} ended unrecorded; it will be run again")
        return stored.status


def _taken_over(task: Task) -> TaskInterruptedError:
    """The error ending a task's job here once its store refused a save: this worker was
    thought dead, and the task (like its job) is another process's now. Nothing more is
    stored from here, and the job's outcome is left to that process."""
    logger.warning("task.taken_over", extra={"task_id": task.id})
    return TaskInterruptedError(f"task {task.id} was taken over by another process")
