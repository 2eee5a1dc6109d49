"""Building the configured task queue for a server process (`Services`)."""

from __future__ import annotations

from ..config import Settings
from ..store.db import Database
from ._job_executor import JobRegistry
from ._run_jobs import register_run_jobs
from .queue import InProcessQueue, TaskQueue
from .runner import Runner


def task_queue_from_settings(settings: Settings, db: Database) -> TaskQueue:
    """`CeleryQueue` if `queue.backend` is `celery`, else an (unstarted) `InProcessQueue`."""
    if settings.queue.backend == "celery":
        from .celery_app import CeleryQueue

        return CeleryQueue(db, settings.queue)
    return InProcessQueue(db, JobRegistry(), settings.queue)


async def start_task_queue(queue: TaskQueue, runner: Runner) -> None:
    """Start an in-process queue, with background runs among its jobs (Celery workers
    start their own), or a Celery queue's sweeper of unsent jobs."""
    if isinstance(queue, InProcessQueue):
        register_run_jobs(queue.executor.registry, runner)
        await queue.start()
        return
    start = getattr(queue, "start", None)
    if start is not None:
        await start()


async def close_task_queue(queue: TaskQueue) -> None:
    """Stop the in-process workers (running jobs are released) or the broker connections."""
    close = getattr(queue, "aclose", None)
    if close is not None:
        await close()
