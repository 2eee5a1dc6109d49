"""`SqlTaskStore`: planned tasks in the server's database (tables `tasks` and `subtasks`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from ..security.principal import Principal, Role
from ..tasks.models import Subtask, Task
from ..types import TaskStatus
from .db import Database
from .repositories.tasks import TaskRepo, fail_interrupted_tasks, pending_tasks
from .views import Page

T = TypeVar("T")

_STRIPES = 64


class SqlTaskStore:
    """A `TaskStore` (see `agentguild.tasks`) on a `Database`: SQLite or PostgreSQL.

    Every call works inside one tenant, through a `TaskRepo` bound to it: a task of
    another tenant is not found, and cannot be overwritten. Each write is one short
    transaction. The writes of one task are applied in the order they were made (the
    scheduler saves parallel subtasks concurrently), each from a snapshot taken when it
    was made; cancelling the caller never cuts a write off half-way.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        # Writes of one task queue on one lock; a few locks cover every task.
        self._locks = [asyncio.Lock() for _ in range(_STRIPES)]

    async def save(self, task: Task) -> None:
        """Insert or replace a task with its subtasks and timeline."""
        snapshot = _copy(task)
        async with self._lock(task):
            await _unbroken(self._write(snapshot, None))

    async def save_subtask(self, task: Task, subtask: Subtask) -> None:
        """Record a change of one subtask of `task` and the task's timeline."""
        snapshot = _copy(task)
        changed = Subtask.from_json(subtask.to_json())
        async with self._lock(task):
            await _unbroken(self._write(snapshot, changed))

    async def get(self, task_id: str, *, tenant_id: str = "default") -> Task | None:
        """The task with its subtasks, or None if the tenant has no such task."""
        async with self.db.session() as session:
            return await TaskRepo(session, _tenant(tenant_id)).get(task_id)

    async def list_tasks(
        self, *, tenant_id: str = "default", status: TaskStatus | None = None, limit: int = 100
    ) -> list[Task]:
        """The tenant's tasks with their subtasks, newest first (at most 500)."""
        page = await self.page(tenant_id=tenant_id, status=status, limit=limit, subtasks=True)
        return page.items

    async def page(
        self,
        *,
        tenant_id: str,
        status: TaskStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        subtasks: bool = False,
    ) -> Page[Task]:
        """One page of the tenant's tasks, newest first; pass `next_cursor` back as `cursor`
        for the next. Subtasks are loaded only if `subtasks`."""
        async with self.db.session() as session:
            repo = TaskRepo(session, _tenant(tenant_id))
            return await repo.list(status, limit, cursor, subtasks=subtasks)

    async def fail_interrupted(self) -> int:
        """Tasks of every tenant left `running` by a process that died become `failed`;
        how many. Call it at start, when no other process runs tasks on this database."""
        async with self.db.session() as session:
            return await fail_interrupted_tasks(session)

    async def pending(self) -> list[tuple[str, str]]:
        """(tenant id, task id) of every tenant's `pending` task, oldest first."""
        async with self.db.session() as session:
            return await pending_tasks(session)

    def _lock(self, task: Task) -> asyncio.Lock:
        return self._locks[hash((task.tenant_id, task.id)) % _STRIPES]

    async def _write(self, task: Task, subtask: Subtask | None) -> None:
        async with self.db.session() as session:
            repo = TaskRepo(session, _tenant(task.tenant_id))
            if subtask is None:
                await repo.save(task)
            else:
                await repo.save_subtask(task, subtask)


def _tenant(tenant_id: str) -> Principal:
    # Repositories check no permissions (the API does): the role is not used.
    return Principal(tenant_id=tenant_id, role=Role.VIEWER)


def _copy(task: Task) -> Task:
    return Task.from_json(task.to_json())


async def _unbroken(write: Awaitable[T]) -> T:
    """Await a write that cancelling the caller must not interrupt half-way (a transaction
    cut off mid-commit can hold SQLite's write lock); a cancellation arriving meanwhile is
    raised once the write is done."""
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
