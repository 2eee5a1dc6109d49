"""Which process runs each planned task: claims, take-overs, releases and recovery.

A task's `owner` is the process (`instances.id`) that queued or runs it. In-process tasks
are owned by the server that queued them from the start; tasks sent to queue workers
(`task.execute` jobs, idempotency key `task:<id>`) are claimed by the worker that runs
them. Every move of a task between owners is one conditional UPDATE (a compare-and-set),
so two processes never both take one task, however stale their view of who is live.
A task recovered (failed, cancelled) is owned by none from then on: its old owner, if it
was only thought dead, has its later saves refused (see `TaskRepo`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Select, String, exists, literal, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import SubtaskRecord, TaskRecord, utcnow
from ..queue_models import QueueJob

INTERRUPTED_TASK_ERROR = "the server stopped while the task was running; submit it again"
CANCELLED_TASK_ERROR = "cancelled on request"
TASK_JOB_KEY_PREFIX = "task:"
"""The idempotency key of a task's queue job is this prefix and the task's id."""


def orphaned_tasks(owner: str, live_owners: Select[str] | None) -> ColumnElement[bool]:
    """Tasks no live process owns: owner none, or neither `owner` (the caller's process)
    nor among `live_owners` (a subquery of live instance ids; None: no other is live)."""
    others = TaskRecord.owner != owner
    if live_owners is not None:
        others = others & TaskRecord.owner.not_in(live_owners)
    return or_(TaskRecord.owner.is_(None), others)


def queue_owned_tasks() -> ColumnElement[bool]:
    """Tasks that have a queue job (`task:<id>`): queue workers run and resume them."""
    key = literal(TASK_JOB_KEY_PREFIX, String) + TaskRecord.id
    return exists(select(QueueJob.id).where(QueueJob.idempotency_key == key))


async def fail_interrupted_tasks(session: AsyncSession, scope: ColumnElement[bool]) -> int:
    """Tasks `running` within `scope` (see `orphaned_tasks`) become `failed` and owned by
    none, their unfinished subtasks `cancelled`; how many. Every tenant."""
    now = utcnow()
    ids = (
        await session.scalars(
            update(TaskRecord)
            .where(TaskRecord.status == "running", scope)
            .values(status="failed", error=INTERRUPTED_TASK_ERROR, finished_at=now, owner=None)
            .returning(TaskRecord.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if ids:
        await session.execute(
            update(SubtaskRecord)
            .where(SubtaskRecord.task_id.in_(ids), SubtaskRecord.status.in_(("pending", "running")))
            .values(status="cancelled", error=INTERRUPTED_TASK_ERROR, finished_at=now)
            .execution_options(synchronize_session=False)
        )
    return len(ids)


async def pending_tasks(
    session: AsyncSession, scope: ColumnElement[bool]
) -> list[tuple[str, str, str | None]]:
    """(tenant id, task id, owner) of every `pending` task within `scope`, oldest first."""
    rows = await session.execute(
        select(TaskRecord.tenant_id, TaskRecord.id, TaskRecord.owner)
        .where(TaskRecord.status == "pending", scope)
        .order_by(TaskRecord.created_at, TaskRecord.id)
    )
    return [(tenant_id, task_id, owner) for tenant_id, task_id, owner in rows.all()]


async def take_orphaned_tasks(
    session: AsyncSession,
    found: Sequence[tuple[str, str, str | None]],
    owner: str,
    scope: ColumnElement[bool],
) -> set[str]:
    """Make `owner` the owner of the tasks `found` (by `pending_tasks`, in an earlier
    transaction) that are still pending, within `scope`, and owned as they were found;
    the ids of those taken. Start a transaction with it (it writes first).

    Comparing the owner makes each take a compare-and-set: of several processes taking
    one task at once, one takes it, however stale the others' view of the live instances.
    """
    by_owner: dict[str | None, list[str]] = {}
    for _, task_id, previous in found:
        by_owner.setdefault(previous, []).append(task_id)
    taken: set[str] = set()
    for previous, ids in by_owner.items():
        unchanged = TaskRecord.owner.is_(None) if previous is None else TaskRecord.owner == previous
        rows = await session.scalars(
            update(TaskRecord)
            .where(TaskRecord.id.in_(ids), TaskRecord.status == "pending", unchanged, scope)
            .values(owner=owner)
            .returning(TaskRecord.id)
            .execution_options(synchronize_session=False)
        )
        taken.update(rows.all())
    return taken


async def release_tasks(session: AsyncSession, task_ids: Sequence[str], owner: str) -> None:
    """`owner` gives up those of `task_ids` it owns that are still pending (they become
    orphans, for the next recovery to take)."""
    await session.execute(
        update(TaskRecord)
        .where(
            TaskRecord.id.in_(task_ids), TaskRecord.owner == owner, TaskRecord.status == "pending"
        )
        .values(owner=None)
        .execution_options(synchronize_session=False)
    )


async def start_owned_task(session: AsyncSession, tenant_id: str, task_id: str, owner: str) -> bool:
    """Move the task from `pending` to `running` if `owner` still owns it; whether it did
    (not: it was cancelled, or another process took it over)."""
    found = await session.scalar(
        update(TaskRecord)
        .where(
            TaskRecord.tenant_id == tenant_id,
            TaskRecord.id == task_id,
            TaskRecord.status == "pending",
            TaskRecord.owner == owner,
        )
        .values(status="running")
        .returning(TaskRecord.id)
        .execution_options(synchronize_session=False)
    )
    return found is not None


async def take_queued_task(
    session: AsyncSession,
    tenant_id: str,
    task_id: str,
    owner: str,
    live_owners: Select[str] | None,
) -> bool:
    """Make `owner` (a queue worker) the owner of the task and mark it `running`, if it is
    `pending` (whoever queued it), or `running` but no live process runs it (its worker
    died: owner none, `owner` itself, or not among `live_owners`; None: no other process
    is live); whether it did."""
    abandoned = or_(TaskRecord.owner == owner, _run_by_nobody(live_owners))
    found = await session.scalar(
        update(TaskRecord)
        .where(
            TaskRecord.tenant_id == tenant_id,
            TaskRecord.id == task_id,
            or_(
                TaskRecord.status == "pending",
                (TaskRecord.status == "running") & abandoned,
            ),
        )
        .values(status="running", owner=owner)
        .returning(TaskRecord.id)
        .execution_options(synchronize_session=False)
    )
    return found is not None


async def release_running_task(
    session: AsyncSession, tenant_id: str, task_id: str, owner: str
) -> bool:
    """`owner` stopped running the task without finishing it (a worker shutting down): it
    becomes `pending` and unowned again, its running subtasks `pending` (its completed
    subtasks stay completed, for the next run to reuse); whether it did."""
    found = await session.scalar(
        update(TaskRecord)
        .where(
            TaskRecord.tenant_id == tenant_id,
            TaskRecord.id == task_id,
            TaskRecord.status == "running",
            TaskRecord.owner == owner,
        )
        .values(status="pending", owner=None)
        .returning(TaskRecord.id)
        .execution_options(synchronize_session=False)
    )
    if found is None:
        return False
    await session.execute(
        update(SubtaskRecord)
        .where(
            SubtaskRecord.tenant_id == tenant_id,
            SubtaskRecord.task_id == task_id,
            SubtaskRecord.status == "running",
        )
        .values(status="pending")
        .execution_options(synchronize_session=False)
    )
    return True


async def cancel_unowned_task(
    session: AsyncSession, tenant_id: str, task_id: str, live_owners: Select[str] | None
) -> bool:
    """Mark the task `cancelled` and owned by none (its unfinished subtasks `cancelled`
    too) if it has not started (`pending`: whoever queued it, it will not start now), or
    is `running` but no live process runs it (owner none, or not among `live_owners`;
    None: no other process is live); whether it did."""
    now = utcnow()
    found = await session.scalar(
        update(TaskRecord)
        .where(
            TaskRecord.tenant_id == tenant_id,
            TaskRecord.id == task_id,
            or_(
                TaskRecord.status == "pending",
                (TaskRecord.status == "running") & _run_by_nobody(live_owners),
            ),
        )
        .values(status="cancelled", error=CANCELLED_TASK_ERROR, finished_at=now, owner=None)
        .returning(TaskRecord.id)
        .execution_options(synchronize_session=False)
    )
    if found is None:
        return False
    await session.execute(
        update(SubtaskRecord)
        .where(
            SubtaskRecord.tenant_id == tenant_id,
            SubtaskRecord.task_id == task_id,
            SubtaskRecord.status.in_(("pending", "running")),
        )
        .values(status="cancelled", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return True


def _run_by_nobody(live_owners: Select[str] | None) -> ColumnElement[bool]:
    """Tasks whose owner is none or not among `live_owners` (None: every task's)."""
    if live_owners is None:
        return true()
    return or_(TaskRecord.owner.is_(None), TaskRecord.owner.not_in(live_owners))
