"""`SqlTaskStore`: planned tasks in the server's database (tables `tasks` and `subtasks`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Select

from .._aio import unbroken
from ..security.principal import Principal, Role
from ..tasks.models import Subtask, Task
from ..types import TaskStatus
from .db import Database
from .errors import NotTaskOwnerError
from .repositories.task_owners import (
    cancel_unowned_task,
    fail_interrupted_tasks,
    orphaned_tasks,
    pending_tasks,
    queue_owned_tasks,
    release_running_task,
    release_tasks,
    start_owned_task,
    take_orphaned_tasks,
    take_queued_task,
)
from .repositories.tasks import TaskRepo
from .views import Page

_STRIPES = 64


class SqlTaskStore:
    """A `TaskStore` (see `agentguild.tasks`) on a `Database`: SQLite or PostgreSQL.

    Every call works inside one tenant, through a `TaskRepo` bound to it: a task of
    another tenant is not found, and cannot be overwritten. Each write is one short
    transaction. The writes of one task are applied in the order they were made (the
    scheduler saves parallel subtasks concurrently), each from a snapshot taken when it
    was made; cancelling the caller never cuts a write off half-way.

    Each task has an owner, the process (`instances.id`) that queued or runs it: `owner`
    for the tasks this store inserts, never changed by later saves. Owners change only by
    compare-and-set: `start` (an in-process task starts only if this process still owns
    it), `take` (a queue worker takes a task), `release`, and recovery, which works on
    *orphans*, tasks no live process owns (`fail_orphaned`, `take_orphaned`), and clears
    the owner of the tasks it ends (as `cancel_unowned` does).

    A store with an `owner` saves only the tasks that `owner` owns (or inserts): a save of
    a stored task owned by another process, or by none, raises `NotTaskOwnerError` and
    writes nothing. A process thought dead that wakes up thus cannot overwrite what the
    others made of its tasks meanwhile.
    """

    def __init__(self, db: Database, *, owner: str | None = None) -> None:
        self.db = db
        self.owner = owner
        """The owner of the tasks this store inserts (None: unowned, an orphan at once)."""
        # Writes of one task queue on one lock; a few locks cover every task.
        self._locks = [asyncio.Lock() for _ in range(_STRIPES)]

    async def save(self, task: Task) -> None:
        """Insert or replace a task with its subtasks and timeline (NotTaskOwnerError: see
        the class)."""
        snapshot = _copy(task)
        async with self._lock(task):
            refused = await unbroken(self._write(snapshot, None))
        if refused is not None:
            raise refused

    async def save_subtask(self, task: Task, subtask: Subtask) -> None:
        """Record a change of one subtask of `task` and the task's timeline
        (NotTaskOwnerError: see the class)."""
        snapshot = _copy(task)
        changed = Subtask.from_json(subtask.to_json())
        async with self._lock(task):
            refused = await unbroken(self._write(snapshot, changed))
        if refused is not None:
            raise refused

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

    async def fail_orphaned(
        self, owner: str, live_owners: Select[str] | None = None, *, skip_queued: bool = False
    ) -> int:
        """Orphaned tasks of every tenant left `running` (their process died) become
        `failed`, their unfinished subtasks `cancelled`; how many.

        Orphans are the tasks owned by neither `owner` (the caller's process) nor a live
        instance (`live_owners`, a subquery of their ids; None: no other process is live).
        With `skip_queued`, tasks that have a queue job are left to the queue's workers.
        """
        async with self.db.session() as session:
            scope = _orphans(owner, live_owners, skip_queued)
            return await fail_interrupted_tasks(session, scope)

    async def take_orphaned(
        self, owner: str, live_owners: Select[str] | None = None, *, skip_queued: bool = False
    ) -> list[tuple[str, str]]:
        """Make `owner` the owner of the orphaned `pending` tasks of every tenant (see
        `fail_orphaned`); (tenant id, task id) of those it took, oldest first. Each task is
        taken by one caller, however many processes take orphans at once."""
        async with self.db.session() as session:
            found = await pending_tasks(session, _orphans(owner, live_owners, skip_queued))
        if not found:
            return []
        # A new transaction that writes first (SQLite cannot turn a read into a write
        # once another connection has written).
        async with self.db.session() as session:
            taken = await take_orphaned_tasks(
                session, found, owner, _orphans(owner, live_owners, skip_queued)
            )
        return [(tenant_id, task_id) for tenant_id, task_id, _ in found if task_id in taken]

    async def release(self, task_ids: Sequence[str], owner: str) -> None:
        """`owner` gives up those of its tasks in `task_ids` that are still pending: they
        become orphans again, for the next `take_orphaned`."""
        if task_ids:
            async with self.db.session() as session:
                await release_tasks(session, task_ids, owner)

    async def start(self, task: Task) -> bool:
        """Move `task` from `pending` to `running` if this store's `owner` still owns it;
        whether it did (not: it was cancelled, or another process took it over)."""
        if self.owner is None:
            return False
        async with self.db.session() as session:
            return await start_owned_task(session, task.tenant_id, task.id, self.owner)

    async def take(
        self, task_id: str, *, tenant_id: str, live_owners: Select[str] | None = None
    ) -> Task | None:
        """Make `owner` run the task (a queue worker's claim): it becomes `running`, owned
        by `owner`, if it is pending, or running on no live process (see `live_owners` in
        `fail_orphaned`). The task, or None if it was not taken."""
        owner = self._owner()
        async with self.db.session() as session:
            if not await take_queued_task(session, tenant_id, task_id, owner, live_owners):
                return None
        return await self.get(task_id, tenant_id=tenant_id)

    async def release_running(self, task_id: str, *, tenant_id: str) -> bool:
        """`owner` stops running the task unfinished: it is `pending` and unowned again
        (its running subtasks `pending`, its completed ones kept); whether it was."""
        owner = self._owner()
        async with self.db.session() as session:
            return await release_running_task(session, tenant_id, task_id, owner)

    async def cancel_unowned(
        self, task_id: str, *, tenant_id: str, live_owners: Select[str] | None = None
    ) -> Task | None:
        """Mark the task `cancelled` if it has not started, or no live process runs it
        (see `live_owners` in `fail_orphaned`); the task if it was."""
        async with self.db.session() as session:
            if not await cancel_unowned_task(session, tenant_id, task_id, live_owners):
                return None
        return await self.get(task_id, tenant_id=tenant_id)

    def _owner(self) -> str:
        if self.owner is None:
            raise ValueError("this task store has no owner: pass `owner=` to claim tasks")
        return self.owner

    def _lock(self, task: Task) -> asyncio.Lock:
        return self._locks[hash((task.tenant_id, task.id)) % _STRIPES]

    async def _write(self, task: Task, subtask: Subtask | None) -> NotTaskOwnerError | None:
        """One save in one transaction; its refusal, if `owner` no longer owns the task (an
        outcome, returned: a caller cancelled meanwhile drops it without an error logged)."""
        try:
            async with self.db.session() as session:
                repo = TaskRepo(session, _tenant(task.tenant_id))
                if subtask is None:
                    await repo.save(task, owner=self.owner)
                else:
                    await repo.save_subtask(task, subtask, owner=self.owner)
        except NotTaskOwnerError as refused:
            return refused
        return None


def _orphans(owner: str, live_owners: Select[str] | None, skip_queued: bool) -> ColumnElement[bool]:
    scope = orphaned_tasks(owner, live_owners)
    return scope & ~queue_owned_tasks() if skip_queued else scope


def _tenant(tenant_id: str) -> Principal:
    # Repositories check no permissions (the API does): the role is not used.
    return Principal(tenant_id=tenant_id, role=Role.VIEWER)


def _copy(task: Task) -> Task:
    return Task.from_json(task.to_json())
