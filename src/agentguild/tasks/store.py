"""Where tasks and their subtasks are kept: the `TaskStore` protocol and an in-memory store."""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from ..types import TaskStatus
from .models import Subtask, Task


@runtime_checkable
class TaskStore(Protocol):
    """Persistence of planned tasks, scoped by tenant.

    Implementations: `InMemoryTaskStore` (one process); `agentguild.store.SqlTaskStore`
    (the serving platform's database) implements the same four methods.

    A store shared by several processes may refuse a save because another process has the
    task now (this one was thought dead meanwhile): it raises `TaskTakenOverError` having
    written nothing, and the task's run stops there, writing nothing more.
    """

    async def save(self, task: Task) -> None:
        """Insert or replace a task with its subtasks and timeline."""
        ...

    async def save_subtask(self, task: Task, subtask: Subtask) -> None:
        """Record a change of one subtask of `task` (its status, result, timings...)
        together with the task's timeline."""
        ...

    async def get(self, task_id: str, *, tenant_id: str = "default") -> Task | None:
        """The task with its subtasks, or None if the tenant has no such task."""
        ...

    async def list_tasks(
        self, *, tenant_id: str = "default", status: TaskStatus | None = None, limit: int = 100
    ) -> list[Task]:
        """The tenant's tasks, newest first, optionally only those with `status`."""
        ...


class InMemoryTaskStore:
    """A `TaskStore` in this process's memory (lost when it exits).

    It keeps copies: changing a task object after saving it does not change the store.
    """

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, str], Task] = {}
        self._lock = asyncio.Lock()

    async def save(self, task: Task) -> None:
        async with self._lock:
            self._tasks[(task.tenant_id, task.id)] = _copy(task)

    async def save_subtask(self, task: Task, subtask: Subtask) -> None:
        async with self._lock:
            stored = self._tasks.get((task.tenant_id, task.id))
            if stored is None:
                self._tasks[(task.tenant_id, task.id)] = _copy(task)
                return
            copy = Subtask.from_json(subtask.to_json())
            stored.subtasks = [copy if s.id == subtask.id else s for s in stored.subtasks]
            if all(s.id != subtask.id for s in stored.subtasks):
                stored.subtasks.append(copy)
            stored.timeline = _copy(task).timeline

    async def get(self, task_id: str, *, tenant_id: str = "default") -> Task | None:
        async with self._lock:
            task = self._tasks.get((tenant_id, task_id))
            return _copy(task) if task is not None else None

    async def list_tasks(
        self, *, tenant_id: str = "default", status: TaskStatus | None = None, limit: int = 100
    ) -> list[Task]:
        async with self._lock:
            tasks = [
                task
                for (tenant, _), task in self._tasks.items()
                if tenant == tenant_id and (status is None or task.status == status)
            ]
        tasks.sort(key=lambda task: task.created_at, reverse=True)
        return [_copy(task) for task in tasks[:limit]]


def _copy(task: Task) -> Task:
    return Task.from_json(task.to_json())
