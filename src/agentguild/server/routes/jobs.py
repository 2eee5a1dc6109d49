"""`/api/admin/dead-letters` and `/api/admin/jobs`: the tenant's background jobs that
failed for good, re-driving them, and any job's state (docs/queue.md).

- `GET /api/admin/dead-letters?include_redriven=&limit=&cursor=`: dead letters, newest
  first (by default only those not re-driven yet).
- `GET /api/admin/dead-letters/{id}`: one dead letter with its job (payload, status).
- `POST /api/admin/dead-letters/{id}/redrive`: queue its job again (`202` with the job;
  `409` if it was re-driven already).
- `GET /api/admin/jobs/{id}`: one job's state.

Everything needs `jobs:manage`. Only the caller's tenant's jobs exist here: another
tenant's, and tenant-less system jobs, answer 404 exactly like missing ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from ...runtime.queue import DeadLetterView, JobView, TaskQueue
from ...security import Permission, Principal
from ..deps import ServicesDep, require
from ..errors import ApiError, ErrorBody
from ._params import Cursor, IdPath, Limit, Page

router = APIRouter(
    prefix="/api/admin",
    tags=["jobs"],
    responses={503: {"model": ErrorBody, "description": "The server has no task queue"}},
)

_Manager = Annotated[Principal, Depends(require(Permission.JOBS_MANAGE))]
_Services = ServicesDep
JobStatus = Literal["queued", "running", "completed", "dead"]
IncludeRedriven = Annotated[
    bool, Query(description="Also list dead letters that were re-driven already.")
]


class JobOut(BaseModel):
    """A background job: what it runs, with what, and how it went."""

    id: str
    name: str
    """The registered handler that runs it."""
    queue: str
    priority: int
    """0 (lowest) .. 9 (highest)."""
    status: JobStatus
    """`queued` (waiting, or waiting for a retry), `running`, `completed` or `dead`."""
    attempts: int
    """Times a worker started it (since it was last re-driven)."""
    completions: int
    """Times it finished successfully (1 for a completed job)."""
    idempotency_key: str
    payload: dict[str, Any]
    """What it was queued with."""
    error: str | None
    """Its last failure."""
    result: Any
    """What its handler returned (completed jobs)."""
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: JobView) -> JobOut:
        return cls.model_validate(
            {
                "id": job.id,
                "name": job.name,
                "queue": job.queue,
                "priority": job.priority,
                "status": job.status,
                "attempts": job.attempts,
                "completions": job.completions,
                "idempotency_key": job.idempotency_key,
                "payload": job.payload,
                "error": job.error,
                "result": job.result,
                "created_at": job.created_at,
                "finished_at": job.finished_at,
            }
        )


class DeadLetterOut(BaseModel):
    """A job that failed after its retries, with its last error."""

    id: str
    job_id: str
    name: str
    """The job's handler."""
    queue: str
    error: str
    """The last failure: exception type and message."""
    attempts: int
    """Attempts made before it was given up."""
    created_at: datetime
    """When it was given up."""
    redriven_at: datetime | None
    """When it was queued again (null: not yet)."""

    @classmethod
    def fields_of(cls, letter: DeadLetterView) -> dict[str, object]:
        return {
            "id": letter.id,
            "job_id": letter.job_id,
            "name": letter.name,
            "queue": letter.queue,
            "error": letter.error,
            "attempts": letter.attempts,
            "created_at": letter.created_at,
            "redriven_at": letter.redriven_at,
        }

    @classmethod
    def of(cls, letter: DeadLetterView) -> DeadLetterOut:
        return cls.model_validate(cls.fields_of(letter))


class DeadLetterDetailOut(DeadLetterOut):
    """A dead letter with its job as it is now (payload, status, result)."""

    job: JobOut | None
    """Null only if the job's record is gone."""

    @classmethod
    def with_job(cls, letter: DeadLetterView, job: JobView | None) -> DeadLetterDetailOut:
        return cls.model_validate(
            {**cls.fields_of(letter), "job": None if job is None else JobOut.of(job)}
        )


def _queue(services: _Services) -> TaskQueue:
    if services.queue is None:
        raise ApiError(503, "unavailable", "this server has no task queue")
    return services.queue


_Queue = Annotated[TaskQueue, Depends(_queue)]


async def _own_letter(queue: TaskQueue, principal: Principal, letter_id: str) -> DeadLetterView:
    letter = await queue.dead_letter(letter_id)
    if letter is None or letter.tenant_id != principal.tenant_id:
        raise ApiError(404, "not_found", f"dead letter {letter_id!r} not found")
    return letter


async def _own_job(queue: TaskQueue, principal: Principal, job_id: str) -> JobView | None:
    job = await queue.status(job_id)
    if job is None or job.tenant_id != principal.tenant_id:
        return None
    return job


@router.get("/dead-letters", summary="List dead letters")
async def list_dead_letters(
    principal: _Manager,
    queue: _Queue,
    include_redriven: IncludeRedriven = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeadLetterOut]:
    """The tenant's jobs that failed after their retries, newest first: by default only
    those not re-driven yet."""
    page = await queue.dead_letter_page(
        limit, tenant_id=principal.tenant_id, include_redriven=include_redriven, cursor=cursor
    )
    return Page(items=[DeadLetterOut.of(d) for d in page.items], next_cursor=page.next_cursor)


@router.get("/dead-letters/{dead_letter_id}", summary="Get a dead letter")
async def get_dead_letter(
    dead_letter_id: IdPath, principal: _Manager, queue: _Queue
) -> DeadLetterDetailOut:
    """One dead letter, with its job's payload and current state."""
    letter = await _own_letter(queue, principal, dead_letter_id)
    job = await _own_job(queue, principal, letter.job_id)
    return DeadLetterDetailOut.with_job(letter, job)


@router.post(
    "/dead-letters/{dead_letter_id}/redrive", status_code=202, summary="Re-drive a dead letter"
)
async def redrive_dead_letter(dead_letter_id: IdPath, principal: _Manager, queue: _Queue) -> JobOut:
    """Queue the dead letter's job again (its attempts start over); the job as queued.
    409 if it was re-driven already."""
    letter = await _own_letter(queue, principal, dead_letter_id)
    if letter.redriven_at is not None:
        raise _redriven_already(letter)
    job_id = await queue.redrive(dead_letter_id)
    if job_id is None:
        # Nothing was queued: another request re-drove it first, or its job is gone.
        letter = await _own_letter(queue, principal, dead_letter_id)
        if letter.redriven_at is not None:
            raise _redriven_already(letter)
    job = None if job_id is None else await _own_job(queue, principal, job_id)
    if job is None:
        raise ApiError(404, "not_found", f"the job of dead letter {dead_letter_id!r} is gone")
    return JobOut.of(job)


def _redriven_already(letter: DeadLetterView) -> ApiError:
    return ApiError(
        409,
        "conflict",
        f"dead letter {letter.id!r} was re-driven already",
        {
            "job_id": letter.job_id,
            "redriven_at": letter.redriven_at and letter.redriven_at.isoformat(),
        },
    )


@router.get("/jobs/{job_id}", summary="Get a job")
async def get_job(job_id: IdPath, principal: _Manager, queue: _Queue) -> JobOut:
    """One background job of the tenant: status, attempts, payload, error, result."""
    job = await _own_job(queue, principal, job_id)
    if job is None:
        raise ApiError(404, "not_found", f"job {job_id!r} not found")
    return JobOut.of(job)
