"""The jobs' state in the database: creation by idempotency key, leases, outcomes, DLQ."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..store.db import Database
from ..store.ids import new_id
from ..store.models import utcnow
from ..store.queue_models import DeadLetter, QueueJob

ClaimKind = Literal["run", "finished", "busy", "missing"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker may do with a delivered job."""

    kind: ClaimKind
    """`run` (the lease is ours), `finished` (completed or dead: drop the message), `busy`
    (another worker holds a live lease), `missing` (no such job)."""
    job: QueueJob | None = None
    lease_until: datetime | None = None


class JobStore:
    """Reads and writes `queue_jobs` and `dead_letters` (tenant-agnostic, like a worker)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        name: str,
        payload: dict[str, Any],
        *,
        queue: str,
        priority: int,
        idempotency_key: str,
        tenant_id: str | None = None,
    ) -> tuple[QueueJob, bool]:
        """The job with this idempotency key, created if new; and whether it was created."""
        existing = await self.by_key(idempotency_key)
        if existing is not None:
            return existing, False
        now = utcnow()
        job = QueueJob(
            id=new_id("job"),
            name=name,
            queue=queue,
            priority=priority,
            payload=payload,
            idempotency_key=idempotency_key,
            tenant_id=tenant_id,
            status="queued",
            attempts=0,
            completions=0,
            created_at=now,
            updated_at=now,
        )
        try:
            async with self.db.session() as session:
                session.add(job)
        except IntegrityError:
            raced = await self.by_key(idempotency_key)
            if raced is None:
                raise
            return raced, False
        return job, True

    async def get(self, job_id: str) -> QueueJob | None:
        """The job, or None."""
        async with self.db.session() as session:
            job = await session.get(QueueJob, job_id)
            if job is not None:
                session.expunge(job)
            return job

    async def by_key(self, idempotency_key: str) -> QueueJob | None:
        """The job created with this idempotency key, or None."""
        async with self.db.session() as session:
            job = await session.scalar(
                select(QueueJob).where(QueueJob.idempotency_key == idempotency_key)
            )
            if job is not None:
                session.expunge(job)
            return job

    async def claim(self, job_id: str, worker: str, lease_s: float) -> Claim:
        """Take the job's lease if it waits, or if its last worker's lease expired."""
        now = utcnow()
        lease_until = now + timedelta(seconds=lease_s)
        async with self.db.session() as session:
            claimed = await session.scalar(
                update(QueueJob)
                .where(
                    QueueJob.id == job_id,
                    or_(
                        QueueJob.status == "queued",
                        (QueueJob.status == "running") & (QueueJob.lease_until < now),
                    ),
                )
                .values(
                    status="running",
                    attempts=QueueJob.attempts + 1,
                    worker=worker,
                    lease_until=lease_until,
                    updated_at=now,
                )
                .returning(QueueJob)
                .execution_options(synchronize_session=False)
            )
            if claimed is not None:
                session.expunge(claimed)
                return Claim("run", claimed, lease_until)
            job = await session.get(QueueJob, job_id)
            if job is None:
                return Claim("missing")
            session.expunge(job)
        if job.status == "running":
            return Claim("busy", job, job.lease_until)
        return Claim("finished", job)

    async def renew(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Extend our lease; False if the job is no longer ours."""
        async with self.db.session() as session:
            found = await session.scalar(
                update(QueueJob)
                .where(
                    QueueJob.id == job_id, QueueJob.worker == worker, QueueJob.status == "running"
                )
                .values(lease_until=utcnow() + timedelta(seconds=lease_s))
                .returning(QueueJob.id)
                .execution_options(synchronize_session=False)
            )
        return found is not None

    async def complete(self, job_id: str, result: Any) -> None:
        """Record success (every success counts in `completions`: the exactly-once audit)."""
        now = utcnow()
        async with self.db.session() as session:
            await session.execute(
                update(QueueJob)
                .where(QueueJob.id == job_id)
                .values(
                    status="completed",
                    completions=QueueJob.completions + 1,
                    result=result,
                    error=None,
                    lease_until=None,
                    updated_at=now,
                    finished_at=now,
                )
            )

    async def release(
        self, job_id: str, worker: str, error: str | None = None, *, uncount: bool = False
    ) -> None:
        """Give the job back (`queued`): to be retried, or re-run after a shutdown (then
        `uncount`: the attempt does not count towards its retries)."""
        attempts = QueueJob.attempts - 1 if uncount else QueueJob.attempts
        async with self.db.session() as session:
            await session.execute(
                update(QueueJob)
                .where(QueueJob.id == job_id, QueueJob.worker == worker)
                .values(
                    status="queued",
                    attempts=attempts,
                    lease_until=None,
                    error=error,
                    updated_at=utcnow(),
                )
            )

    async def bury(self, job_id: str, error: str) -> DeadLetter | None:
        """Mark the job `dead` and add it to the dead letters with its error."""
        now = utcnow()
        async with self.db.session() as session:
            job = await session.get(QueueJob, job_id)
            if job is None:
                return None
            job.status, job.error, job.lease_until = "dead", error, None
            job.updated_at = job.finished_at = now
            letter = DeadLetter(
                id=new_id("dlq"),
                job_id=job.id,
                name=job.name,
                queue=job.queue,
                tenant_id=job.tenant_id,
                error=error,
                attempts=job.attempts,
                created_at=now,
            )
            session.add(letter)
        return letter

    async def dead_letters(
        self, *, include_redriven: bool = False, limit: int = 100, tenant_id: str | None = None
    ) -> list[DeadLetter]:
        """Dead letters, newest first (of one tenant's jobs if `tenant_id` is given)."""
        query = select(DeadLetter).order_by(DeadLetter.created_at.desc()).limit(limit)
        if not include_redriven:
            query = query.where(DeadLetter.redriven_at.is_(None))
        if tenant_id is not None:
            query = query.where(DeadLetter.tenant_id == tenant_id)
        async with self.db.session() as session:
            letters = list((await session.scalars(query)).all())
            session.expunge_all()
        return letters

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter, or None."""
        async with self.db.session() as session:
            letter = await session.get(DeadLetter, dead_letter_id)
            if letter is not None:
                session.expunge(letter)
            return letter

    async def redrive(self, dead_letter_id: str) -> QueueJob | None:
        """Queue a dead letter's job again (attempts reset); None if unknown or re-driven."""
        now = utcnow()
        async with self.db.session() as session:
            letter = await session.get(DeadLetter, dead_letter_id)
            if letter is None or letter.redriven_at is not None:
                return None
            job = await session.get(QueueJob, letter.job_id)
            if job is None:
                return None
            letter.redriven_at = now
            job.status, job.attempts, job.lease_until, job.updated_at = "queued", 0, None, now
            await session.flush()
            session.expunge(job)
        return job

    async def counts(self) -> dict[tuple[str, str], int]:
        """Jobs per (queue, status): queue depth and in-flight work, for metrics."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(QueueJob.queue, QueueJob.status, func.count()).group_by(
                    QueueJob.queue, QueueJob.status
                )
            )
            return {(queue, status): count for queue, status, count in rows.all()}

    async def waiting(self) -> list[QueueJob]:
        """Jobs to (re)schedule at start: queued, or running under an expired lease."""
        now = utcnow()
        async with self.db.session() as session:
            jobs = list(
                (
                    await session.scalars(
                        select(QueueJob)
                        .where(
                            or_(
                                QueueJob.status == "queued",
                                (QueueJob.status == "running") & (QueueJob.lease_until < now),
                            )
                        )
                        .order_by(QueueJob.created_at)
                    )
                ).all()
            )
            session.expunge_all()
        return jobs
