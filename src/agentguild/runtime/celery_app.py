"""The Celery side of the task queue: the app, its one task, and `CeleryQueue`.

The broker carries only job ids (`agentguild.execute_job(job_id)`); the job itself lives
in the database (see `agentguild.runtime.queue`). Messages are acknowledged late
(`task_acks_late`), rejected back to the broker when the worker process dies
(`task_reject_on_worker_lost`), and prefetched one at a time, so a job in flight on a lost
worker is delivered again; its lease in the database stops a second delivery from running
it twice while its first worker is still alive (a Redis broker re-delivers messages that
outlive its visibility timeout). Celery has no dead-letter queue: dead letters are rows.

A job is stored before its id is sent, and `sent_at` records the send; a job whose send
failed (the broker was down) or never happened (its sender died) is sent again by the
sweeper of a `CeleryQueue` (`start`), so enqueuing succeeds while the broker is down.

Priorities are 0 (lowest) .. 9 (highest) for callers. RabbitMQ queues are declared with
`x-max-priority`; Redis emulates priorities with one list per level, where 0 is the
highest, so the level is inverted for it (and ordering is approximate there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from celery import Celery  # type: ignore[import-untyped]
from celery.exceptions import Reject  # type: ignore[import-untyped]
from kombu import Queue  # type: ignore[attr-defined]
from kombu.exceptions import KombuError

from .._platform_settings import DatabaseSettings, QueueSettings
from ..errors import ConfigError
from ..store.db import Database
from ..store.models import utcnow
from ..store.queue_models import QueueJob
from ._job_executor import JobExecutor, JobRegistry, Outcome
from ._job_store import JobStore
from ._job_sweeper import UnsentSweeper
from ._worker_census import WorkerCensus
from .queue import QUEUES, JobQueries, worker_name

__all__ = ["CeleryQueue", "WorkerRuntime", "broker_queue", "create_celery_app"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

TASK_NAME = "agentguild.execute_job"

SEND_ERRORS = (KombuError, OSError)
"""What a send to an unreachable broker raises (after kombu's own retries)."""


def broker_queue(settings: QueueSettings, queue: str) -> str:
    """The broker's name of a logical queue: `<prefix>.<queue>`."""
    return f"{settings.queue_prefix}.{queue}"


def _is_redis(broker_url: str) -> bool:
    return broker_url.startswith(("redis://", "rediss://", "redis+socket://"))


def broker_priority(settings: QueueSettings, priority: int) -> int:
    """The message priority for the broker: inverted on Redis (0 is its highest)."""
    return 9 - priority if _is_redis(_broker_url(settings)) else priority


def _broker_url(settings: QueueSettings) -> str:
    if not settings.broker_url:
        raise ConfigError("queue.backend is 'celery' but queue.broker_url is not set")
    return settings.broker_url


def create_celery_app(settings: QueueSettings, runtime: WorkerRuntime | None = None) -> Celery:
    """The Celery app for these settings; with `runtime`, it can also execute jobs (workers)."""
    url = _broker_url(settings)
    app = Celery("agentguild", broker=url, set_as_current=False)
    transport: dict[str, Any] = {}
    if _is_redis(url):
        transport = {
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
            "sep": ":",
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for messages of dead workers about once per visibility timeout (the
            # default sweep runs every ~100 s whatever the timeout).
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 2)),
            "unacked_restore_throttle": 1,
        }
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_default_queue=broker_queue(settings, "default"),
        task_queues=[
            Queue(  # type: ignore[no-untyped-call]
                broker_queue(settings, name),
                routing_key=broker_queue(settings, name),
                queue_arguments={"x-max-priority": 9},
            )
            for name in QUEUES
        ],
        task_queue_max_priority=9,
        task_default_priority=broker_priority(settings, 5),
        worker_hijack_root_logger=False,
    )
    if runtime is not None:
        _register_task(app, settings, runtime)
    return app


def send_job(
    app: Celery,
    settings: QueueSettings,
    job_id: str,
    queue: str,
    priority: int,
    countdown: float | None = None,
) -> None:
    """Put one job id on its broker queue."""
    app.send_task(
        TASK_NAME,
        args=(job_id,),
        queue=broker_queue(settings, queue),
        routing_key=broker_queue(settings, queue),
        priority=broker_priority(settings, priority),
        countdown=countdown,
    )


def _register_task(app: Celery, settings: QueueSettings, runtime: WorkerRuntime) -> None:
    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True
    )
    def execute_job(job_id: str) -> str:
        try:
            outcome = runtime.execute(job_id)
        except concurrent.futures.CancelledError:
            # Worker shutting down: the job was released; the broker delivers it again.
            raise Reject("worker shutting down", requeue=True) from None
        if outcome.kind in ("retry", "deferred", "released"):
            _send_again(app, settings, runtime, job_id, outcome)
        return outcome.kind

    del execute_job


def _send_again(
    app: Celery, settings: QueueSettings, runtime: WorkerRuntime, job_id: str, outcome: Outcome
) -> None:
    """Re-send a job its worker gave back, and record the send; a failed send leaves it to
    the servers' sweepers."""
    at = utcnow()
    try:
        send_job(app, settings, job_id, outcome.queue, outcome.priority, outcome.delay_s)
    except SEND_ERRORS as exc:
        logger.warning("job.send_failed", extra={"job_id": job_id, "error": _describe(exc)})
        return
    # Shutting down: unrecorded, the job is sent once more by a sweeper (and the second
    # delivery is dropped or deferred).
    with contextlib.suppress(concurrent.futures.CancelledError):
        runtime.call(runtime.store.mark_sent(job_id, at))


class WorkerRuntime:
    """One worker process's event loop (in a thread), database and job executor.

    Celery pool threads hand jobs to the loop, so async handlers share one database pool.
    Started lazily (after a prefork pool has forked); `shutdown` releases running jobs.
    """

    def __init__(
        self,
        database: DatabaseSettings,
        settings: QueueSettings,
        registry: JobRegistry | Callable[[Database], Coroutine[Any, Any, JobRegistry]],
    ) -> None:
        self.database = database
        self.settings = settings
        self.registry = registry
        """The jobs, or an async function building them on the worker's database."""
        self._jobs: JobRegistry | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: Database | None = None
        self._executor: JobExecutor | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def store(self) -> JobStore:
        """The job store (after the runtime has started)."""
        self._start()
        assert self._executor is not None
        return self._executor.store

    def execute(self, job_id: str) -> Outcome:
        """Run one delivered job on the loop and wait for its outcome (pool threads call it)."""
        return self.call(self._track(job_id))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the runtime's loop and wait for it; `CancelledError` once the
        runtime is shutting down (the job goes back to the broker)."""
        if self._stopping:
            coro.close()
            raise concurrent.futures.CancelledError
        loop = self._start()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def shutdown(self) -> None:
        """Release running jobs back to the queue (they are re-delivered), close the database."""
        self._stopping = True
        loop = self._loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)

    async def _track(self, job_id: str) -> Outcome:
        assert self._executor is not None
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            return await self._executor.execute(job_id)
        finally:
            self._running.discard(task)

    async def _stop(self) -> None:
        for close in self._jobs.closers if self._jobs is not None else []:
            try:
                await close()
            except Exception:
                logger.exception("worker.shutdown_hook_failed")
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self._db is not None:
            await self._db.close()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="agentguild-worker-loop", daemon=True
            )
            thread.start()
            db = Database(self.database)
            asyncio.run_coroutine_threadsafe(db.start(), loop).result()
            self._db = db
            jobs = self.registry
            if not isinstance(jobs, JobRegistry):
                jobs = asyncio.run_coroutine_threadsafe(jobs(db), loop).result()
            self._jobs = jobs
            self._executor = JobExecutor(
                JobStore(db), jobs, self.settings, worker_name(), broker_requeues=True
            )
            self._loop = loop
            return loop


class CeleryQueue(JobQueries):
    """Jobs run by `agentguild worker` processes behind a Redis or RabbitMQ broker.

    `start` starts its sweeper, which sends again the jobs whose send failed; `aclose`
    stops it. Worker counts come from a cached `inspect` (see `WorkerCensus`).
    """

    def __init__(
        self,
        db: Database,
        settings: QueueSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = JobStore(db)
        self.settings = settings
        self.app = create_celery_app(settings)
        self.send_failures = 0
        """Sends the broker refused (their jobs are sent again by a sweeper)."""
        self.sweeper = UnsentSweeper(self.store, self._send, settings)
        self.census = WorkerCensus(self._inspect_workers, clock=clock)
        """Workers per queue; `clock` says when its counts are stale."""
        self._sweeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the sweeper: every `sweep_interval_s`, jobs unsent for `resend_after_s`
        (their send failed, or their sender died) are sent again."""
        if self._sweeping is None:
            self._sweeping = asyncio.create_task(
                self.sweeper.run(), name="agentguild-queue-sweeper"
            )

    async def _deliver(self, job: QueueJob) -> None:
        # A refused send is logged and counted; the job stays stored and the sweeper
        # sends it later (`/ready` reports the broker down meanwhile).
        await self._send(job)

    async def _send(self, job: QueueJob) -> bool:
        """Send the job's id and record it; False (logged, counted) if the broker refused."""
        at = utcnow()
        try:
            await asyncio.to_thread(
                send_job, self.app, self.settings, job.id, job.queue, job.priority
            )
        except SEND_ERRORS as exc:
            self.send_failures += 1
            logger.warning("queue.send_failed", extra={"job_id": job.id, "error": _describe(exc)})
            return False
        await self.store.mark_sent(job.id, at)
        return True

    async def ping(self) -> None:
        """Raise if the broker cannot be reached."""

        def connect() -> None:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)

        await asyncio.to_thread(connect)

    async def workers(self) -> dict[str, int]:
        """Worker processes consuming each queue (those answering an `inspect` within a
        second), as last counted: refreshed in the background when older than
        `WORKERS_TTL_S`; only the first call waits."""
        counts = await self.census.get()
        return {name: counts.get(name, 0) for name in QUEUES}

    def _inspect_workers(self) -> dict[str, int]:
        answers = self.app.control.inspect(timeout=1.0).active_queues() or {}
        counts = dict.fromkeys(QUEUES, 0)
        names = {broker_queue(self.settings, name): name for name in QUEUES}
        for queues in answers.values():
            for queue in queues:
                name = names.get(str(queue.get("name")))
                if name is not None:
                    counts[name] += 1
        return counts

    async def aclose(self) -> None:
        """Stop the sweeper and release the broker connections."""
        if self._sweeping is not None:
            self._sweeping.cancel()
            await asyncio.gather(self._sweeping, return_exceptions=True)
            self._sweeping = None
        await self.census.aclose()
        await asyncio.to_thread(self.app.close)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
