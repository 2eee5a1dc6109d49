"""`TaskManager`: planned tasks run in the background, by priority; create, list, get, cancel."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..agents.termination import ExternalStop
from ..errors import AgentguildError, TaskTakenOverError
from ..types import Event, TaskStatus
from .models import Task
from .store import TaskStore
from .team import PlannedTeam

TaskEventObserver = Callable[[Task, Event], "Awaitable[None] | None"]
"""Called with every event of every task run (e.g. to relay them to API clients)."""

TaskClaim = Callable[[Task], Awaitable[bool]]
"""Called before a queued task starts: True if this manager may run it (see `TaskManager`)."""

_Key = tuple[str, str]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Job:
    """How one queued task runs: on which team, in which context."""

    team: PlannedTeam
    context: contextvars.Context


class TaskManager:
    """Runs planned tasks in this process: what the `/api/tasks` endpoints call.

    `submit()` stores a task as pending and queues it; up to `max_running` tasks run at
    once, highest `priority` first (then oldest). `cancel()` stops a running task promptly
    or withdraws a queued one. Tasks live in the manager's store, so `get()` and
    `list_tasks()` show their subtasks, statuses, results, timings and errors as they
    progress.
    `on_event` sees every event of every run, called from the task's run (in its context).
    Call `aclose()` when done.

    `team` runs the tasks submitted without a team of their own; `store` keeps every task
    (default: the team's store). A manager may have no team of its own if every task names
    one (`submit(..., team=)`, `enqueue(..., team=)`).

    `claim` guards against running a task twice when several processes share the store:
    it is awaited just before a queued task starts and must move the stored task from
    pending to running only if this process may still run it (e.g. still owns it:
    `SqlTaskStore.start`); a task it refuses is not run. Default: no claim (one process).
    """

    def __init__(
        self,
        team: PlannedTeam | None = None,
        *,
        store: TaskStore | None = None,
        max_running: int = 2,
        on_event: TaskEventObserver | None = None,
        claim: TaskClaim | None = None,
    ) -> None:
        if store is None and team is not None:
            store = team.store
        if store is None:
            raise ValueError("a TaskManager needs a store: pass `store=`, or a team with one")
        if max_running < 1:
            raise ValueError("max_running must be at least 1")
        self.team = team
        self.store: TaskStore = store
        self.max_running = max_running
        self.on_event = on_event
        self.claim = claim
        self._queue: asyncio.PriorityQueue[tuple[int, int, _Key]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._workers: list[asyncio.Task[None]] = []
        self._stops: dict[_Key, ExternalStop] = {}
        self._cancelled: set[_Key] = set()
        self._finished: dict[_Key, asyncio.Event] = {}
        self._jobs: dict[_Key, _Job] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._closing = False

    async def submit(
        self,
        text: str,
        *,
        priority: int = 0,
        timeout_s: float | None = None,
        tenant_id: str = "default",
        team: PlannedTeam | None = None,
    ) -> Task:
        """Store a new pending task and queue it; returns it (with its id). `team` runs it
        instead of the manager's team."""
        if not text.strip():
            raise ValueError("a task needs a description of what to do")
        task = Task(text, priority=priority, timeout_s=timeout_s, tenant_id=tenant_id)
        return await self.enqueue(task, team=team)

    async def enqueue(
        self,
        task: Task,
        *,
        team: PlannedTeam | None = None,
        context: contextvars.Context | None = None,
    ) -> Task:
        """Store `task` as pending and queue it: a task built by the caller (its id, tenant,
        priority, timeout), or a stored one to run again (its completed subtasks are reused).

        `team` runs it (default: the manager's team); its progress goes to the manager's
        store either way. It runs in a copy of `context` (default: the current context, as
        `asyncio.create_task` would), so context variables the caller set apply to it.
        """
        if self._closing:
            raise AgentguildError("the task manager is closed; create a new one")
        team = team if team is not None else self.team
        if team is None:
            raise ValueError("no team to run the task: pass `team=` (this manager has none)")
        key = (task.tenant_id, task.id)
        if key in self._jobs:
            raise ValueError(f"task {task.id!r} is already queued or running")
        task.status, task.result, task.error, task.finished_at = "pending", None, None, None
        await self.store.save(task)
        if team.store is not self.store:
            team = team.with_store(self.store)
        context = context if context is not None else contextvars.copy_context()
        self._jobs[key] = _Job(team, context.copy())
        self._finished[key] = asyncio.Event()
        self._start_workers()
        self._queue.put_nowait((-task.priority, next(self._order), key))
        return task

    async def get(self, task_id: str, *, tenant_id: str = "default") -> Task | None:
        """The task with its subtasks, or None."""
        return await self.store.get(task_id, tenant_id=tenant_id)

    async def list_tasks(
        self, *, tenant_id: str = "default", status: TaskStatus | None = None, limit: int = 100
    ) -> list[Task]:
        """The tenant's tasks, newest first."""
        return await self.store.list_tasks(tenant_id=tenant_id, status=status, limit=limit)

    async def cancel(self, task_id: str, *, tenant_id: str = "default") -> bool:
        """Stop a running task or withdraw a queued one; False if it had already finished
        (or does not exist). `TaskTakenOverError` if the store refused to mark a queued
        task cancelled: another process has it now (it is no longer started here)."""
        key = (tenant_id, task_id)
        stop = self._stops.get(key)
        if stop is not None:
            stop.stop("cancelled on request")
            return True
        if key in self._jobs:
            self._cancelled.add(key)  # before any await: no worker starts it from now on
        task = await self.store.get(task_id, tenant_id=tenant_id)
        if task is None or task.finished:
            return False
        task.status, task.error, task.finished_at = "cancelled", "cancelled on request", time.time()
        await self.store.save(task)
        self._mark_finished(key)
        return True

    def holds(self, task_id: str, *, tenant_id: str = "default") -> bool:
        """Whether the task is queued or running in this manager."""
        return (tenant_id, task_id) in self._jobs

    def stop(self, task_id: str, reason: str = "cancelled on request") -> bool:
        """Stop the task with this id if it is running here, whatever its tenant (a
        cancel request from another process); whether it was running."""
        stops = [stop for (_, running), stop in self._stops.items() if running == task_id]
        for stop in stops:
            stop.stop(reason)
        return bool(stops)

    async def wait(self, task_id: str, *, tenant_id: str = "default") -> Task | None:
        """Wait until the task has finished (or was cancelled); returns it."""
        finished = self._finished.get((tenant_id, task_id))
        if finished is not None:
            await finished.wait()
        return await self.store.get(task_id, tenant_id=tenant_id)

    async def aclose(self) -> None:
        """Stop the running tasks (they end as cancelled, and are stored so) and the
        workers. Queued tasks stay pending in the store."""
        self._closing = True
        for stop in list(self._stops.values()):
            stop.stop("the task manager was closed")
        await asyncio.gather(*self._runs, return_exceptions=True)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    def _start_workers(self) -> None:
        while len(self._workers) < self.max_running:
            self._workers.append(asyncio.create_task(self._work()))

    async def _work(self) -> None:
        while True:
            _, _, key = await self._queue.get()
            if self._closing:
                return
            job = self._jobs[key]
            stop = self._stops[key] = ExternalStop()  # before any await: cancel() sees it
            run = asyncio.create_task(self._run(key, stop, job.team), context=job.context)
            self._runs.add(run)
            try:
                await run
            except TaskTakenOverError:  # its store refused a save: another process has it
                logger.warning("task.taken_over", extra={"task_id": key[1]})
            except Exception:  # the team recorded the failure on the task; serve the next
                logger.exception("task.crashed", extra={"task_id": key[1]})
            finally:
                self._runs.discard(run)
                del self._stops[key]
                del self._jobs[key]
                self._cancelled.discard(key)
                self._mark_finished(key)

    async def _run(self, key: _Key, stop: ExternalStop, team: PlannedTeam) -> None:
        task = await self.store.get(key[1], tenant_id=key[0])
        if task is None or task.status != "pending" or key in self._cancelled:
            return
        if self.claim is not None and not await self.claim(task):
            logger.warning("task.not_claimed", extra={"task_id": task.id})
            return
        async for event in team.run(task=task, stop=stop):
            await self._notify(task, event)

    async def _notify(self, task: Task, event: Event) -> None:
        if self.on_event is None:
            return
        outcome = self.on_event(task, event)
        if inspect.isawaitable(outcome):
            await outcome

    def _mark_finished(self, key: _Key) -> None:
        finished = self._finished.pop(key, None)
        if finished is not None:
            finished.set()  # waiters hold it; later `wait()` calls find the task finished
