"""`TaskManager`: planned tasks run in the background, by priority; create, list, get, cancel."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable

from ..agents.termination import ExternalStop
from ..errors import AgentguildError
from ..types import Event, TaskStatus
from .models import Task
from .store import TaskStore
from .team import PlannedTeam

TaskEventObserver = Callable[[Task, Event], "Awaitable[None] | None"]
"""Called with every event of every task run (e.g. to relay them to API clients)."""

_Key = tuple[str, str]


class TaskManager:
    """Runs planned tasks in this process: what the `/api/tasks` endpoints call.

    `submit()` stores a task as pending and queues it; up to `max_running` tasks run at
    once, highest `priority` first (then oldest). `cancel()` stops a running task promptly
    or withdraws a queued one. Tasks live in the team's store, so `get()` and `list_tasks()`
    show their subtasks, statuses, results, timings and errors as they progress.
    `on_event` sees every event of every run. Call `aclose()` when done.
    """

    def __init__(
        self,
        team: PlannedTeam,
        *,
        max_running: int = 2,
        on_event: TaskEventObserver | None = None,
    ) -> None:
        if team.store is None:
            raise ValueError("a TaskManager needs a PlannedTeam with a store")
        if max_running < 1:
            raise ValueError("max_running must be at least 1")
        self.team = team
        self.store: TaskStore = team.store
        self.max_running = max_running
        self.on_event = on_event
        self._queue: asyncio.PriorityQueue[tuple[int, int, _Key]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._workers: list[asyncio.Task[None]] = []
        self._stops: dict[_Key, ExternalStop] = {}
        self._cancelled: set[_Key] = set()
        self._finished: dict[_Key, asyncio.Event] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._closing = False

    async def submit(
        self,
        text: str,
        *,
        priority: int = 0,
        timeout_s: float | None = None,
        tenant_id: str = "default",
    ) -> Task:
        """Store a new pending task and queue it; returns it (with its id)."""
        if not text.strip():
            raise ValueError("a task needs a description of what to do")
        if self._closing:
            raise AgentguildError("the task manager is closed; create a new one")
        task = Task(text, priority=priority, timeout_s=timeout_s, tenant_id=tenant_id)
        await self.store.save(task)
        key = (tenant_id, task.id)
        self._finished[key] = asyncio.Event()
        self._start_workers()
        self._queue.put_nowait((-priority, next(self._order), key))
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
        (or does not exist)."""
        key = (tenant_id, task_id)
        stop = self._stops.get(key)
        if stop is not None:
            stop.stop("cancelled on request")
            return True
        task = await self.store.get(task_id, tenant_id=tenant_id)
        if task is None or task.finished:
            return False
        self._cancelled.add(key)
        task.status, task.error, task.finished_at = "cancelled", "cancelled on request", time.time()
        await self.store.save(task)
        self._mark_finished(key)
        return True

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
            stop = self._stops[key] = ExternalStop()  # before any await: cancel() sees it
            run = asyncio.create_task(self._run(key, stop))
            self._runs.add(run)
            try:
                await run
            finally:
                self._runs.discard(run)
                del self._stops[key]
                self._mark_finished(key)

    async def _run(self, key: _Key, stop: ExternalStop) -> None:
        task = await self.store.get(key[1], tenant_id=key[0])
        if task is None or task.status != "pending" or key in self._cancelled:
            return
        async for event in self.team.run(task=task, stop=stop):
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
