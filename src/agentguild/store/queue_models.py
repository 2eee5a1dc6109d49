"""Tables of the job queue: every job's state (the idempotency audit) and dead letters.

The broker (or the in-process queue) only carries job ids; the truth about a job — its
payload, attempts, lease and outcome — lives here, so a re-delivered message can tell a
completed job from one whose worker died.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow

JOB_STATUSES = ("queued", "running", "completed", "dead")
"""`queued` (waiting, or waiting to be retried), `running` (a worker holds its lease),
`completed`, `dead` (failed after its retries; see `DeadLetter`)."""


class QueueJob(Base):
    """One job put on a queue; its idempotency key is unique across all jobs."""

    __tablename__ = "queue_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    """The registered handler that runs it."""
    queue: Mapped[str] = mapped_column(String(50))
    priority: Mapped[int] = mapped_column(Integer, default=5)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True, default=None)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Times a worker started the handler (more than 1 only after failures or worker loss)."""
    completions: Mapped[int] = mapped_column(Integer, default=0)
    """Times the handler finished successfully: the audit says 1 for a completed job."""
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    """When its id was last handed to the broker; null, or older than `updated_at` (queued
    again since): not yet (a queued job whose send failed, or whose sender died, is sent
    again by the sweeper)."""
    error: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[Any] = mapped_column(JSON, default=None, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    __table_args__ = (Index("ix_queue_jobs_queue_status", "queue", "status"),)


class DeadLetter(Base):
    """A job that failed for good, with its last error; re-driving it queues it again."""

    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    name: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(50))
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True, default=None)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    redriven_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
