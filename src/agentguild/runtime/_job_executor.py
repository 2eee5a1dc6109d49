"""Runs one delivered job exactly once: claim its lease, run its handler, record the outcome.

Shared by the in-process queue and the Celery workers, so both have the same semantics:
a delivery of a finished job is dropped, a delivery of a job another worker still holds
is deferred, transient failures are retried with jittered exponential backoff, and the
last failure moves the job to the dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .._platform_settings import QueueSettings
from ..errors import AgentguildError
from ..store.models import utcnow
from ._job_store import JobStore

logger = logging.getLogger(__name__)

OutcomeKind = Literal["completed", "retry", "dead", "dropped", "deferred", "released"]


class PermanentJobError(AgentguildError):
    """Raised by a handler for a failure that retrying cannot fix: dead-lettered at once."""


class JobInterruptedError(AgentguildError):
    """Raised by a handler stopped by its worker's shutdown: the job is delivered again
    at once, and this attempt does not count towards its retries."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets: the job and its attempt number (1 on the first run)."""

    job_id: str
    name: str
    payload: dict[str, Any]
    attempt: int
    idempotency_key: str


JobHandler = Callable[[JobContext], Awaitable[Any]]
"""An async function running one job; its JSON-able return value is stored as the result."""


@dataclass(slots=True)
class JobRegistry:
    """Handlers by job name; workers run only jobs registered here.

    ```python
    jobs = JobRegistry()

    @jobs.handler("reports.build")
    async def build(ctx: JobContext) -> dict[str, Any]: ...
    ```
    """

    handlers: dict[str, JobHandler] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run (in order) when the worker shuts down, before running jobs are released."""

    def on_shutdown(self, close: Callable[[], Awaitable[None]]) -> None:
        """Have `close` awaited when the worker shuts down."""
        self.closers.append(close)

    def handler(self, name: str) -> Callable[[JobHandler], JobHandler]:
        """Decorator registering `fn` under `name`."""

        def register(fn: JobHandler) -> JobHandler:
            self.handlers[name] = fn
            return fn

        return register

    def get(self, name: str) -> JobHandler | None:
        """The handler of `name`, or None."""
        return self.handlers.get(name)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one delivery, and when to deliver the job again (if ever)."""

    kind: OutcomeKind
    delay_s: float = 0.0
    queue: str = "default"
    """Where to deliver it again (`retry`, `deferred`)."""
    priority: int = 5


def backoff_delay(attempt: int, settings: QueueSettings) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
    ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (attempt - 1))
    return random.uniform(0.0, ceiling)


class JobExecutor:
    """Executes delivered job ids for one worker."""

    def __init__(
        self,
        store: JobStore,
        registry: JobRegistry,
        settings: QueueSettings,
        worker: str,
        *,
        broker_requeues: bool = False,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.worker = worker
        self.broker_requeues = broker_requeues
        """A job cancelled by a shutdown goes back to the broker with its message (Celery
        rejects it with `requeue`), so it needs no new send."""

    async def execute(self, job_id: str) -> Outcome:
        """Run the job if this delivery should; the outcome says whether to deliver again."""
        claim = await self.store.claim(job_id, self.worker, self.settings.lease_s)
        if claim.kind in ("finished", "missing"):
            logger.info("job.dropped", extra={"job_id": job_id, "reason": claim.kind})
            return Outcome("dropped")
        if claim.kind == "busy":
            # Re-delivered while its worker still holds it (e.g. a Redis visibility timeout):
            # look again when the lease would have expired.
            wait = 1.0
            if claim.lease_until is not None:
                wait = max(1.0, (claim.lease_until - utcnow()).total_seconds() + 0.5)
            job = claim.job
            assert job is not None
            return Outcome("deferred", wait, job.queue, job.priority)
        job = claim.job
        assert job is not None
        handler = self.registry.get(job.name)
        if handler is None:
            await self.store.bury(job_id, f"no handler registered for job {job.name!r}")
            return Outcome("dead")
        context = JobContext(job.id, job.name, job.payload, job.attempts, job.idempotency_key)
        renewing = asyncio.create_task(self._renew(job_id))
        try:
            result = await handler(context)
        except asyncio.CancelledError:
            await asyncio.shield(
                self.store.release(job_id, self.worker, requeued=self.broker_requeues)
            )
            raise
        except PermanentJobError as exc:
            await self.store.bury(job_id, _describe(exc))
            return Outcome("dead")
        except JobInterruptedError as exc:
            await self.store.release(job_id, self.worker, _describe(exc), uncount=True)
            return Outcome("released", 0.0, job.queue, job.priority)
        except Exception as exc:
            outcome = await self._failed(job_id, job.attempts, exc)
            return Outcome(outcome.kind, outcome.delay_s, job.queue, job.priority)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        await self.store.complete(job_id, result)
        return Outcome("completed")

    async def _failed(self, job_id: str, attempts: int, exc: Exception) -> Outcome:
        error = _describe(exc)
        if attempts > self.settings.max_retries:
            logger.warning("job.dead", extra={"job_id": job_id, "error": error})
            await self.store.bury(job_id, error)
            return Outcome("dead")
        logger.info("job.retry", extra={"job_id": job_id, "attempt": attempts, "error": error})
        await self.store.release(job_id, self.worker, error)
        return Outcome("retry", backoff_delay(attempts, self.settings))

    async def _renew(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            if not await self.store.renew(job_id, self.worker, self.settings.lease_s):
                logger.warning("job.lease_lost", extra={"job_id": job_id})
                return


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:4000]
