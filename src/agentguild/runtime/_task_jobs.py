"""Planned tasks as queue jobs: `task.execute` runs (or resumes) one stored task.

With `queue.backend: celery`, `TaskService.submit` stores the task and queues
`task.execute`; a worker executes it with `TaskService.execute`, which claims the task
and runs it from its stored state: the plan is reused, and subtasks that completed before
(on a worker that died, or one that shut down) are not run again; their stored results
feed the synthesis. A delivery for a finished task does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..security import Principal, Role
from ..store.repositories.task_owners import TASK_JOB_KEY_PREFIX
from ._job_executor import JobContext, JobInterruptedError, JobRegistry

if TYPE_CHECKING:
    from .task_service import TaskService

TASK_JOB = "task.execute"
"""The job name of a queued task; payload `{"task_id", "tenant_id", "role", "user_id",
"api_key_id"}` (the submitter, on whose behalf its model calls are made)."""

TASK_QUEUE = "default"
"""The queue tasks go to (a task spans categories, so not a category's queue)."""


class TaskInterruptedError(JobInterruptedError):
    """The task stopped unfinished here: its worker is shutting down (the task is stored
    pending again), or another process took it over (this worker was thought dead; the
    task is that process's now). Its job is delivered again, and this attempt does not
    count (a delivery while another worker holds the job waits; one for a finished task
    does nothing)."""


def task_job_key(task_id: str) -> str:
    """The idempotency key of a task's job: one job per task, however often it is sent."""
    return f"{TASK_JOB_KEY_PREFIX}{task_id}"


def task_job_payload(principal: Principal, task_id: str) -> dict[str, Any]:
    """The `task.execute` payload of a task submitted by `principal`."""
    return {
        "task_id": task_id,
        "tenant_id": principal.tenant_id,
        "role": principal.role.value,
        "user_id": principal.user_id,
        "api_key_id": principal.api_key_id,
    }


def task_job_priority(priority: int) -> int:
    """The job priority (0..9, default 5) of a task's priority (-1000..1000, default 0):
    tasks above 0 go ahead of ordinary jobs, those below after them; 4 and more are
    equally urgent, as are -5 and less."""
    return max(0, min(9, 5 + priority))


def payload_principal(payload: Mapping[str, Any]) -> Principal:
    """The submitter a `task.execute` payload names."""

    def optional(key: str) -> str | None:
        value = payload.get(key)
        return None if value is None else str(value)

    return Principal(
        str(payload["tenant_id"]),
        Role(str(payload.get("role") or Role.USER.value)),
        user_id=optional("user_id"),
        api_key_id=optional("api_key_id"),
    )


def register_task_jobs(registry: JobRegistry, tasks: TaskService) -> JobRegistry:
    """Add `task.execute`, executed by `tasks` in this process, to `registry`; returns it.

    Closing `tasks` (at the worker's shutdown) stops the running tasks unfinished: their
    jobs end with `TaskInterruptedError` and are delivered again.
    """

    @registry.handler(TASK_JOB)
    async def execute_task(ctx: JobContext) -> dict[str, Any]:
        principal = payload_principal(ctx.payload)
        status = await tasks.execute(principal, str(ctx.payload["task_id"]))
        return {"status": status or "finished"}

    registry.on_shutdown(tasks.aclose)
    return registry
