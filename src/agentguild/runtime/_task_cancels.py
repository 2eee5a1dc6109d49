"""Cancelling a planned task that runs in another process (an instance, a queue worker).

The counterpart of `RunOwnership.cancel_elsewhere` for tasks: a task not started yet, or
that no live process runs, is marked `cancelled` at once; otherwise its id goes out on the
cancel channel, and the process running it (whose `TaskService` listens) stops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Select

from .._aio import poll_until
from ..store.task_store import SqlTaskStore
from ..tasks import Task
from .cancels import CancelChannel
from .instances import InstanceHeartbeat


async def cancel_elsewhere(
    store: SqlTaskStore,
    task: Task,
    *,
    cancels: CancelChannel,
    live_owners: Callable[[], Select[str] | None],
    instance: InstanceHeartbeat | None,
    wait_s: float,
) -> Task:
    """Stop a task not running in this process; the stored task afterwards.

    If no live process runs it (it waits for a worker, or its process died), it is
    marked `cancelled` at once; otherwise its owner is asked to stop it, and waited for
    up to `wait_s` (the request is sent again every second meanwhile, which also reaches
    a worker that was just taking the task up).
    """
    tenant, task_id = task.tenant_id, task.id
    if instance is not None:
        await instance.sweep()  # its owner may have died (seen at once on this host)
        task = await store.get(task_id, tenant_id=tenant) or task
    deadline = time.monotonic() + wait_s
    while not task.finished:
        marked = await store.cancel_unowned(task_id, tenant_id=tenant, live_owners=live_owners())
        await cancels.publish(task_id)
        if marked is not None:
            return marked
        left = deadline - time.monotonic()
        if left <= 0:
            break
        task = await _until_finished(store, task, min(1.0, left))
    return task


async def _until_finished(store: SqlTaskStore, task: Task, timeout_s: float) -> Task:
    """The stored task once it has finished, or after `timeout_s`."""
    latest = task

    async def finished() -> bool:
        nonlocal latest
        latest = await store.get(task.id, tenant_id=task.tenant_id) or latest
        return latest.finished

    await poll_until(finished, timeout_s=timeout_s)
    return latest
