"""The task queue: background jobs by name, on named queues, with priorities.

`TaskQueue` has two implementations chosen by settings (`queue.backend`):
`InProcessQueue` (embedded default: asyncio workers in this process) and `CeleryQueue`
(`agentguild.runtime.celery_app`: Celery workers behind a Redis or RabbitMQ broker). Both
keep every job's state in the database (`queue_jobs`), which makes them idempotent (one
job per idempotency key; a re-delivered message never re-runs a completed job), retry
transient failures with jittered exponential backoff, and move jobs that keep failing to
the dead letters (`dead_letters`), from which they can be re-driven.

```python
queue = InProcessQueue(db, jobs, settings.queue)
await queue.start()
job_id = await queue.enqueue("reports.build", {"month": "2026-11"}, queue="analysis")
```
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import socket
from typing import Any, Protocol

from .._platform_settings import QueueSettings
from ..errors import AgentguildError
from ..store.db import Database
from ..store.queue_models import QueueJob
from ..store.views import Page
from ._job_executor import JobContext, JobExecutor, JobHandler, JobRegistry, PermanentJobError
from ._job_store import JobStore
from ._job_views import DeadLetterView, JobView

__all__ = [
    "QUEUES",
    "DeadLetterView",
    "InProcessQueue",
    "JobContext",
    "JobHandler",
    "JobRegistry",
    "JobView",
    "PermanentJobError",
    "TaskQueue",
    "UnknownQueueError",
    "worker_name",
]

logger = logging.getLogger(__name__)

QUEUES: dict[str, int] = {"default": 5, "research": 4, "code": 6, "analysis": 3}
"""The queues and their default priorities (0 lowest .. 9 highest)."""


class UnknownQueueError(AgentguildError):
    """A job was put on a queue that does not exist."""


class TaskQueue(Protocol):
    """Where background work goes; the same contract in process and on Celery."""

    async def enqueue(
        self,
        name: str,
        payload: dict[str, Any],
        *,
        queue: str = "default",
        priority: int | None = None,
        idempotency_key: str | None = None,
        tenant_id: str | None = None,
    ) -> str:
        """Queue job `name`; its id. A known `idempotency_key` returns the existing job's id
        and queues nothing."""
        ...

    async def status(self, job_id: str) -> JobView | None:
        """The job's state, or None."""
        ...

    async def dead_letters(
        self,
        limit: int = 100,
        *,
        tenant_id: str | None = None,
        include_redriven: bool = False,
        cursor: str | None = None,
    ) -> list[DeadLetterView]:
        """Jobs that failed after their retries (not yet re-driven, unless
        `include_redriven`), newest first; only one tenant's jobs if `tenant_id` is given;
        after `cursor` (a `next_cursor` of `dead_letter_page`)."""
        ...

    async def dead_letter_page(
        self,
        limit: int = 100,
        *,
        tenant_id: str | None = None,
        include_redriven: bool = False,
        cursor: str | None = None,
    ) -> Page[DeadLetterView]:
        """`dead_letters` one page at a time: pass `next_cursor` back as `cursor` for the
        next (None: last page); InvalidCursorError for a malformed cursor."""
        ...

    async def dead_letter(self, dead_letter_id: str) -> DeadLetterView | None:
        """One dead letter, or None."""
        ...

    async def redrive(self, dead_letter_id: str) -> str | None:
        """Queue a dead letter's job again; its id, or None if there is no such letter."""
        ...

    async def ping(self) -> None:
        """Raise if the queue cannot accept work (for `/ready`)."""
        ...

    async def depth(self) -> dict[str, int]:
        """Waiting jobs per queue (for metrics)."""
        ...

    async def workers(self) -> dict[str, int]:
        """Workers consuming each queue (for metrics)."""
        ...

    async def dead_count(self) -> int:
        """Jobs that are dead letters now (for metrics)."""
        ...


def worker_name() -> str:
    """This process's worker name: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def check_queue(queue: str, priority: int | None) -> int:
    """The job's priority (the queue's default if None); UnknownQueueError for a bad queue."""
    if queue not in QUEUES:
        raise UnknownQueueError(f"unknown queue {queue!r}; queues: {', '.join(QUEUES)}")
    if priority is None:
        return QUEUES[queue]
    if not 0 <= priority <= 9:
        raise UnknownQueueError(f"priority {priority} is out of range 0..9")
    return priority


class JobQueries:
    """What both queues share: storing jobs (then `_deliver`, each queue its own way), the
    read side and the dead-letter side."""

    store: JobStore

    async def enqueue(
        self,
        name: str,
        payload: dict[str, Any],
        *,
        queue: str = "default",
        priority: int | None = None,
        idempotency_key: str | None = None,
        tenant_id: str | None = None,
    ) -> str:
        """Store job `name` and deliver it; its id (an existing job's, delivered nothing,
        for a known `idempotency_key`)."""
        job, created = await self.store.create(
            name,
            payload,
            queue=queue,
            priority=check_queue(queue, priority),
            idempotency_key=idempotency_key or f"auto:{os.urandom(12).hex()}",
            tenant_id=tenant_id,
        )
        if created:
            await self._deliver(job)
        return job.id

    async def redrive(self, dead_letter_id: str) -> str | None:
        """Queue a dead letter's job again; its id, or None if there is no such letter."""
        job = await self.store.redrive(dead_letter_id)
        if job is None:
            return None
        await self._deliver(job)
        return job.id

    async def _deliver(self, job: QueueJob) -> None:
        """Hand a stored job to the workers (the in-process heap, or the broker)."""
        raise NotImplementedError

    async def status(self, job_id: str) -> JobView | None:
        """The job's state, or None."""
        job = await self.store.get(job_id)
        return None if job is None else JobView.of(job)

    async def dead_letters(
        self,
        limit: int = 100,
        *,
        tenant_id: str | None = None,
        include_redriven: bool = False,
        cursor: str | None = None,
    ) -> list[DeadLetterView]:
        """Jobs that failed after their retries (not yet re-driven, unless
        `include_redriven`), newest first, after `cursor`."""
        page = await self.dead_letter_page(
            limit, tenant_id=tenant_id, include_redriven=include_redriven, cursor=cursor
        )
        return page.items

    async def dead_letter_page(
        self,
        limit: int = 100,
        *,
        tenant_id: str | None = None,
        include_redriven: bool = False,
        cursor: str | None = None,
    ) -> Page[DeadLetterView]:
        """One page of dead letters, newest first, and the cursor of the next."""
        page = await self.store.dead_letter_page(
            include_redriven=include_redriven, limit=limit, tenant_id=tenant_id, cursor=cursor
        )
        return Page([DeadLetterView.of(letter) for letter in page.items], page.next_cursor)

    async def dead_letter(self, dead_letter_id: str) -> DeadLetterView | None:
        """One dead letter, or None."""
        letter = await self.store.dead_letter(dead_letter_id)
        return None if letter is None else DeadLetterView.of(letter)

    async def depth(self) -> dict[str, int]:
        """Waiting jobs per queue."""
        counts = await self.store.counts()
        return {queue: counts.get((queue, "queued"), 0) for queue in QUEUES}

    async def dead_count(self) -> int:
        """Jobs that are dead letters now."""
        counts = await self.store.counts()
        return sum(count for (_, status), count in counts.items() if status == "dead")


class InProcessQueue(JobQueries):
    """Jobs run by `concurrency` asyncio workers in this process, highest priority first.

    Jobs left queued (or running) by a previous process are picked up again at `start`.
    `aclose` cancels running jobs, which go back to `queued` for the next start.
    """

    def __init__(self, db: Database, registry: JobRegistry, settings: QueueSettings) -> None:
        self.store = JobStore(db)
        self.settings = settings
        self.executor = JobExecutor(self.store, registry, settings, worker_name())
        self._heap: list[tuple[int, int, str]] = []
        self._order = itertools.count()
        self._ready = asyncio.Condition()
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._pushing: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._busy = 0

    async def start(self) -> None:
        """Start the workers and schedule the jobs a previous process left behind."""
        for job in await self.store.waiting():
            await self._push(job.id, job.priority)
        self._workers = [
            asyncio.create_task(self._work(), name=f"agentguild-queue-{n}")
            for n in range(self.settings.concurrency)
        ]

    async def aclose(self) -> None:
        """Stop the workers; running jobs are released (`queued`) for the next start."""
        for timer in self._timers:
            timer.cancel()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _deliver(self, job: QueueJob) -> None:
        await self._push(job.id, job.priority)

    async def workers(self) -> dict[str, int]:
        """This process's live workers, which consume every queue."""
        alive = sum(not worker.done() for worker in self._workers)
        return dict.fromkeys(QUEUES, alive)

    async def ping(self) -> None:
        """The in-process queue is up while its workers are."""
        if not self._workers or all(worker.done() for worker in self._workers):
            raise AgentguildError("the in-process queue is not started")

    async def join(self) -> None:
        """Wait until no job is waiting, scheduled for a retry, or running (tests, benches)."""
        while self._heap or self._timers or self._pushing or self._busy:
            self._idle.clear()
            await self._idle.wait()

    async def _push(self, job_id: str, priority: int) -> None:
        async with self._ready:
            heapq.heappush(self._heap, (-priority, next(self._order), job_id))
            self._ready.notify()

    def _push_later(self, job_id: str, priority: int, delay_s: float) -> None:
        loop = asyncio.get_running_loop()

        def due() -> None:
            # Counted as pending until the job is back on the heap (see `join`).
            task = loop.create_task(self._push(job_id, priority))
            self._pushing.add(task)
            task.add_done_callback(self._pushing.discard)
            self._timers.discard(timer)

        timer = loop.call_later(delay_s, due)
        self._timers.add(timer)

    async def _work(self) -> None:
        while True:
            async with self._ready:
                while not self._heap:
                    await self._ready.wait()
                neg_priority, _, job_id = heapq.heappop(self._heap)
                self._busy += 1
            try:
                outcome = await self.executor.execute(job_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The store failed: keep the job, try again later.
                logger.exception("queue.execute_failed", extra={"job_id": job_id})
                outcome = None
                self._push_later(job_id, -neg_priority, 1.0)
            finally:
                self._busy -= 1
            if outcome is not None and outcome.kind in ("retry", "deferred", "released"):
                self._push_later(job_id, -neg_priority, outcome.delay_s)
            if not self._heap and not self._timers and not self._busy:
                self._idle.set()
