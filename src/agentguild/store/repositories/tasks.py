"""Planned tasks and their subtasks, stored as rows and read back as `Task` records."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ...tasks.models import Mark, Subtask, Task
from ...types import TaskStatus, Usage
from ..errors import ConflictError, NotTaskOwnerError
from ..models import SubtaskRecord, TaskRecord
from ..views import Page
from ._base import TenantRepo, newest_first, page_of


class TaskRepo(TenantRepo):
    """The tenant's planned tasks (see `agentguild.tasks`), with their subtasks and timeline.

    Writes start with an UPDATE (an INSERT when there was nothing to update), never with a
    read, so concurrent writers queue on the database's write lock instead of failing.
    A task's `owner` is written when the task is inserted and never by later saves (only
    the compare-and-sets of `task_owners` move it).

    Saves made with an `owner` (the writing process) are *fenced*: a stored task is
    changed only if that process still owns it, checked by the UPDATE itself, which holds
    the task's row until commit (PostgreSQL row lock; the write lock on SQLite), so
    nobody takes the task over before the save lands. A process thought dead, whose task
    was recovered (which clears its owner) or taken over meanwhile, gets
    `NotTaskOwnerError`, having written nothing.
    """

    async def save(self, task: Task, *, owner: str | None = None) -> None:
        """Insert or replace the task, its subtasks and timeline. `owner` is the writing
        process: the task's owner if this inserts it, which must own it if it is stored
        (NotTaskOwnerError otherwise); None: unchecked, inserted unowned. ConflictError if
        another tenant has a task with this id."""
        self._check(task)
        values = _task_values(task)
        if await self._update_task(task.id, values, owner):
            await self._session.execute(
                delete(SubtaskRecord).where(
                    SubtaskRecord.tenant_id == self._tenant_id, SubtaskRecord.task_id == task.id
                )
            )
        else:
            try:
                await self._session.execute(
                    insert(TaskRecord).values(
                        id=task.id, tenant_id=self._tenant_id, owner=owner, **values
                    )
                )
            except IntegrityError as exc:
                raise ConflictError(f"task id {task.id!r} is taken") from exc
        if task.subtasks:
            await self._session.execute(
                insert(SubtaskRecord),
                [self._subtask_row(task.id, i, s) for i, s in enumerate(task.subtasks)],
            )

    async def save_subtask(self, task: Task, subtask: Subtask, *, owner: str | None = None) -> None:
        """Record a change of one subtask and the task's timeline (the whole task, owned by
        `owner`, if it was not stored yet). Fenced by `owner` as `save` is."""
        self._check(task)
        if not await self._update_task(task.id, {"timeline": _timeline(task)}, owner):
            await self.save(task, owner=owner)
            return
        updated = await self._session.scalar(
            update(SubtaskRecord)
            .where(
                SubtaskRecord.tenant_id == self._tenant_id,
                SubtaskRecord.task_id == task.id,
                SubtaskRecord.id == subtask.id,
            )
            .values(**_subtask_values(subtask))
            .returning(SubtaskRecord.id)
            .execution_options(synchronize_session=False)
        )
        if updated is None:
            ids = [s.id for s in task.subtasks]
            position = ids.index(subtask.id) if subtask.id in ids else len(ids)
            await self._session.execute(
                insert(SubtaskRecord).values(**self._subtask_row(task.id, position, subtask))
            )

    async def get(self, task_id: str) -> Task | None:
        """The task with its subtasks, or None."""
        row = await self._one(
            select(TaskRecord).where(
                TaskRecord.tenant_id == self._tenant_id, TaskRecord.id == task_id
            )
        )
        if row is None:
            return None
        subtasks = await self._subtasks([row.id])
        return _task_of(row, subtasks.get(row.id, []))

    async def list(
        self,
        status: TaskStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        subtasks: bool = False,
    ) -> Page[Task]:
        """Tasks newest first, optionally in one status; with their subtasks if `subtasks`."""
        query = select(TaskRecord).where(TaskRecord.tenant_id == self._tenant_id)
        if status is not None:
            query = query.where(TaskRecord.status == status)
        query = newest_first(query, TaskRecord.created_at, TaskRecord.id, cursor, limit)
        page = page_of(await self._all(query), limit)
        children = await self._subtasks([r.id for r in page.items]) if subtasks else {}
        tasks = [_task_of(row, children.get(row.id, [])) for row in page.items]
        return Page(tasks, page.next_cursor)

    async def _subtasks(self, task_ids: Sequence[str]) -> dict[str, builtins.list[SubtaskRecord]]:
        if not task_ids:
            return {}
        rows = await self._all(
            select(SubtaskRecord)
            .where(SubtaskRecord.tenant_id == self._tenant_id, SubtaskRecord.task_id.in_(task_ids))
            .order_by(SubtaskRecord.task_id, SubtaskRecord.position, SubtaskRecord.id)
        )
        by_task: dict[str, builtins.list[SubtaskRecord]] = {}
        for row in rows:
            by_task.setdefault(row.task_id, []).append(row)
        return by_task

    async def _update_task(self, task_id: str, values: dict[str, Any], owner: str | None) -> bool:
        """Update the task's row with `values` if `owner` (None: anyone) owns it; whether
        the task is stored. NotTaskOwnerError if it is, but owned by another or by none."""
        query = update(TaskRecord).where(
            TaskRecord.tenant_id == self._tenant_id, TaskRecord.id == task_id
        )
        if owner is not None:
            query = query.where(TaskRecord.owner == owner)
        found = await self._session.scalar(
            query.values(**values)
            .returning(TaskRecord.id)
            .execution_options(synchronize_session=False)
        )
        if found is not None:
            return True
        if owner is not None and await self._stored(task_id):
            raise NotTaskOwnerError(
                f"task {task_id!r} is no longer owned by {owner!r}: another process has it"
            )
        return False

    async def _stored(self, task_id: str) -> bool:
        found = await self._session.scalar(
            select(TaskRecord.id).where(
                TaskRecord.tenant_id == self._tenant_id, TaskRecord.id == task_id
            )
        )
        return found is not None

    def _check(self, task: Task) -> None:
        if task.tenant_id != self._tenant_id:
            raise ValueError(
                f"task {task.id!r} belongs to tenant {task.tenant_id!r}, "
                f"not to this repository's tenant {self._tenant_id!r}"
            )

    def _subtask_row(self, task_id: str, position: int, subtask: Subtask) -> dict[str, Any]:
        return {
            "tenant_id": self._tenant_id,
            "task_id": task_id,
            "id": subtask.id,
            "position": position,
            "title": _text(subtask.title),
            "depends_on": list(subtask.depends_on),
            **_subtask_values(subtask),
        }


# ---- rows <-> records --------------------------------------------------------------------


def _task_values(task: Task) -> dict[str, Any]:
    return {
        "agent_id": task.agent_id,
        "input": _text(task.input),
        "status": task.status,
        "priority": task.priority,
        "timeout_s": task.timeout_s,
        "result": _text(task.result),
        "error": _text(task.error),
        "timeline": _timeline(task),
        "prompt_tokens": task.usage.prompt_tokens,
        "completion_tokens": task.usage.completion_tokens,
        "created_at": _time(task.created_at),
        "started_at": _time(task.started_at),
        "finished_at": _time(task.finished_at),
    }


def _subtask_values(subtask: Subtask) -> dict[str, Any]:
    """The columns a subtask's progress changes."""
    return {
        "category": subtask.category[:100],
        "status": subtask.status,
        "specialist": subtask.specialist[:200],
        "result": _text(subtask.result),
        "error": _text(subtask.error),
        "attempts": subtask.attempts,
        "prompt_tokens": subtask.usage.prompt_tokens,
        "completion_tokens": subtask.usage.completion_tokens,
        "started_at": _time(subtask.started_at),
        "finished_at": _time(subtask.finished_at),
    }


def _timeline(task: Task) -> list[Any]:
    return [[mark.subtask_id, mark.kind, mark.at] for mark in task.timeline]


def _task_of(row: TaskRecord, subtasks: Sequence[SubtaskRecord]) -> Task:
    return Task(
        input=row.input,
        id=row.id,
        status=row.status,  # type: ignore[arg-type]  # written from a TaskStatus
        priority=row.priority,
        timeout_s=row.timeout_s,
        tenant_id=row.tenant_id,
        agent_id=row.agent_id,
        subtasks=[_subtask_of(s) for s in subtasks],
        result=row.result,
        error=row.error,
        created_at=row.created_at.timestamp(),
        started_at=_epoch(row.started_at),
        finished_at=_epoch(row.finished_at),
        timeline=[
            Mark(str(s), "end" if k == "end" else "start", float(at)) for s, k, at in row.timeline
        ],
        usage=Usage(row.prompt_tokens, row.completion_tokens),
    )


def _subtask_of(row: SubtaskRecord) -> Subtask:
    return Subtask(
        id=row.id,
        title=row.title,
        category=row.category,
        depends_on=tuple(str(d) for d in row.depends_on),
        status=row.status,  # type: ignore[arg-type]  # written from a SubtaskStatus
        specialist=row.specialist,
        result=row.result,
        error=row.error,
        attempts=row.attempts,
        started_at=_epoch(row.started_at),
        finished_at=_epoch(row.finished_at),
        usage=Usage(row.prompt_tokens, row.completion_tokens),
    )


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a model's answer rarely does, but must not fail a save.
    return None if value is None else value.replace("\x00", "")
