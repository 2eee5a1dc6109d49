"""The jobs' state in the database: creation by idempotency key, broker sends, leases,
outcomes, dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..store.db import Database
from ..store.ids import new_id
from ..store.models import utcnow
from ..store.queue_models import DeadLetter, QueueJob
from ..store.repositories._base import newest_first, page_of
from ..store.views import Page

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
        self,
        job_id: str,
        worker: str,
        error: str | None = None,
        *,
        uncount: bool = False,
        requeued: bool = False,
    ) -> None:
        """Give the job back (`queued`): to be retried, or re-run after a shutdown (then
        `uncount`: the attempt does not count towards its retries). It waits for a re-send
        (`sent_at` cleared) unless `requeued`: its message went back to the broker."""
        attempts = QueueJob.attempts - 1 if uncount else QueueJob.attempts
        now = utcnow()
        async with self.db.session() as session:
            await session.execute(
                update(QueueJob)
                .where(QueueJob.id == job_id, QueueJob.worker == worker)
                .values(
                    status="queued",
                    attempts=attempts,
                    lease_until=None,
                    error=error,
                    updated_at=now,
                    sent_at=now if requeued else None,
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
        self,
        *,
        include_redriven: bool = False,
        limit: int = 100,
        tenant_id: str | None = None,
        cursor: str | None = None,
    ) -> list[DeadLetter]:
        """Dead letters, newest first (of one tenant's jobs if `tenant_id` is given), after
        `cursor` (a `next_cursor` of `dead_letter_page`)."""
        page = await self.dead_letter_page(
            include_redriven=include_redriven, limit=limit, tenant_id=tenant_id, cursor=cursor
        )
        return page.items

    async def dead_letter_page(
        self,
        *,
        include_redriven: bool = False,
        limit: int = 100,
        tenant_id: str | None = None,
        cursor: str | None = None,
    ) -> Page[DeadLetter]:
        """One page of dead letters, newest first (keyset on `created_at`, `id`), and the
        cursor of the next; InvalidCursorError for a malformed `cursor`."""
        query = newest_first(
            select(DeadLetter), DeadLetter.created_at, DeadLetter.id, cursor, limit
        )
        if not include_redriven:
            query = query.where(DeadLetter.redriven_at.is_(None))
        if tenant_id is not None:
            query = query.where(DeadLetter.tenant_id == tenant_id)
        async with self.db.session() as session:
            letters = list((await session.scalars(query)).all())
            session.expunge_all()
        return page_of(letters, limit)

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

    async def mark_sent(self, job_id: str, at: datetime) -> None:
        """Record that the job's id went to the broker; `at` is taken just before the send,
        so a release racing the send (newer `updated_at`) still counts as unsent."""
        async with self.db.session() as session:
            await session.execute(
                update(QueueJob)
                .where(
                    QueueJob.id == job_id,
                    or_(QueueJob.sent_at.is_(None), QueueJob.sent_at < at),
                )
                .values(sent_at=at)
            )

    async def claim_unsent(
        self, older_than_s: float, *, limit: int = 100, now: datetime | None = None
    ) -> list[QueueJob]:
        """Take jobs waiting for a send that never came (queued, not sent since, for
        `older_than_s`) to send them, highest priority first. The claim moves a job's
        `updated_at` to `now` (default: the current time) only if no one else has since, so
        of two sweepers one gets it; if that one dies before sending, the job comes back
        after `older_than_s`."""
        now = now or utcnow()
        cutoff = now - timedelta(seconds=older_than_s)
        async with self.db.session() as session:
            seen = (
                await session.execute(
                    select(QueueJob.id, QueueJob.updated_at)
                    .where(_unsent(), QueueJob.updated_at <= cutoff)
                    .order_by(QueueJob.priority.desc(), QueueJob.created_at)
                    .limit(limit)
                )
            ).all()
            if not seen:
                return []
            claimed = list(
                (
                    await session.scalars(
                        update(QueueJob)
                        .where(
                            or_(
                                *(
                                    (QueueJob.id == job_id) & (QueueJob.updated_at == updated_at)
                                    for job_id, updated_at in seen
                                )
                            ),
                            _unsent(),
                        )
                        .values(updated_at=now)
                        .returning(QueueJob)
                        .execution_options(synchronize_session=False)
                    )
                ).all()
            )
            session.expunge_all()
        return sorted(claimed, key=lambda job: (-job.priority, job.created_at))


def _unsent() -> ColumnElement[bool]:
    """Queued and not sent since (`updated_at` moves when a job is queued again)."""
    return (QueueJob.status == "queued") & or_(
        QueueJob.sent_at.is_(None), QueueJob.sent_at < QueueJob.updated_at
    )
