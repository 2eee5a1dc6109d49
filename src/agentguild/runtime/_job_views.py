"""Jobs and dead letters as the queue's API shows them (`agentguild.runtime.queue`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..store.queue_models import DeadLetter, QueueJob


@dataclass(frozen=True, slots=True)
class JobView:
    """A job's state as the API shows it."""

    id: str
    name: str
    queue: str
    priority: int
    status: str
    """`queued`, `running`, `completed` or `dead`."""
    tenant_id: str | None
    attempts: int
    completions: int
    idempotency_key: str
    error: str | None
    result: Any
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any] = field(default_factory=dict)
    """What the job was queued with (its handler's input)."""

    @classmethod
    def of(cls, job: QueueJob) -> JobView:
        """The view of a stored job."""
        return cls(
            job.id,
            job.name,
            job.queue,
            job.priority,
            job.status,
            job.tenant_id,
            job.attempts,
            job.completions,
            job.idempotency_key,
            job.error,
            job.result,
            job.created_at,
            job.finished_at,
            dict(job.payload or {}),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """A job that failed for good, as the API shows it."""

    id: str
    job_id: str
    name: str
    queue: str
    tenant_id: str | None
    error: str
    attempts: int
    created_at: datetime
    redriven_at: datetime | None

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterView:
        """The view of a stored dead letter."""
        return cls(
            letter.id,
            letter.job_id,
            letter.name,
            letter.queue,
            letter.tenant_id,
            letter.error,
            letter.attempts,
            letter.created_at,
            letter.redriven_at,
        )
