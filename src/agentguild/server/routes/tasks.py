"""`/api/tasks`: planned tasks — decomposed, run in parallel, merged (docs/tasks.md).

- `POST /api/tasks` `{"input", "agent_id", "priority", "timeout_s"}`: `202` with the new
  task (pending); it runs in the background (in this process, or on a queue worker with
  `queue.backend: celery`), on the stored planned agent `agent_id` (id or name) or on the
  server's default team.
- `GET /api/tasks?status=&limit=&cursor=`: the tenant's tasks, newest first (no subtasks).
- `GET /api/tasks/{id}`: the task with its subtasks and timeline.
- `POST /api/tasks/{id}/cancel`: stop it (or withdraw it if queued), wherever it runs;
  answers with the task once it has stopped (a finished task, unchanged).

Creating and cancelling need `agents:execute`, reading `data:read`. A tenant's tasks are
visible to all its members; another tenant's answer 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ...runtime.task_service import NotPlannedError
from ...security import Permission, Principal
from ...tasks import Subtask, Task
from ...types import SubtaskStatus, TaskStatus, Usage
from ..deps import ServicesDep, check_message_size, require
from ..errors import ApiError, register_error
from ._params import ID_PATTERN, Cursor, IdPath, Limit, Page, _no_nul

router = APIRouter(prefix="/api/tasks", tags=["tasks"])
register_error(NotPlannedError, 400, "not_a_planned_agent")

_Execute = Annotated[Principal, Depends(require(Permission.AGENTS_EXECUTE))]
_Read = Annotated[Principal, Depends(require(Permission.DATA_READ))]
_Services = ServicesDep
StatusQuery = Annotated[TaskStatus | None, Query(description="Only tasks in this status.")]


class TaskCreate(BaseModel):
    """A task to plan and run."""

    model_config = ConfigDict(extra="forbid")

    input: Annotated[str, Field(min_length=1, pattern=r"\S"), AfterValidator(_no_nul)]
    """What to do, in words."""
    agent_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    """A stored agent of `kind: planned`, by id or name; default: the server's team
    (planner, research, code and analysis specialists, synthesiser on the default model)."""
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    """Queued tasks run highest priority first (then oldest)."""
    timeout_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    """The task fails if it runs longer."""


class UsageOut(BaseModel):
    """Tokens spent."""

    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def of(cls, usage: Usage) -> UsageOut:
        return cls(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)


class SubtaskOut(BaseModel):
    """One subtask of a task: what to do, who did it, how it went."""

    id: str
    title: str
    category: str
    """research, code, analysis, ...: which specialist does it."""
    depends_on: list[str]
    """Ids of the subtasks whose results it needed."""
    status: SubtaskStatus
    specialist: str
    """The agent that worked on it ("" until it started)."""
    result: str | None
    error: str | None
    attempts: int
    """Attempts made (more than 1 after retries)."""
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    usage: UsageOut

    @classmethod
    def of(cls, subtask: Subtask) -> SubtaskOut:
        return cls(
            id=subtask.id,
            title=subtask.title,
            category=subtask.category,
            depends_on=list(subtask.depends_on),
            status=subtask.status,
            specialist=subtask.specialist,
            result=subtask.result,
            error=subtask.error,
            attempts=subtask.attempts,
            started_at=_time(subtask.started_at),
            finished_at=_time(subtask.finished_at),
            duration_s=subtask.duration_s,
            usage=UsageOut.of(subtask.usage),
        )


class MarkOut(BaseModel):
    """A subtask started or ended."""

    subtask_id: str
    kind: Literal["start", "end"]
    at: datetime


class TaskSummaryOut(BaseModel):
    """A task: its input, status, outcome and timings."""

    id: str
    input: str
    status: TaskStatus
    agent_id: str | None
    """The planned agent it runs on; null: the server's default team."""
    priority: int
    timeout_s: float | None
    result: str | None
    """The answer (completed tasks)."""
    error: str | None
    """Why it failed or was cancelled."""
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    usage: UsageOut

    @classmethod
    def fields_of(cls, task: Task) -> dict[str, object]:
        return {
            "id": task.id,
            "input": task.input,
            "status": task.status,
            "agent_id": task.agent_id,
            "priority": task.priority,
            "timeout_s": task.timeout_s,
            "result": task.result,
            "error": task.error,
            "created_at": _time(task.created_at),
            "started_at": _time(task.started_at),
            "finished_at": _time(task.finished_at),
            "usage": UsageOut.of(task.usage),
        }

    @classmethod
    def of(cls, task: Task) -> TaskSummaryOut:
        return cls.model_validate(cls.fields_of(task))


class TaskOut(TaskSummaryOut):
    """A task with its subtasks (in the plan's order) and its timeline."""

    subtasks: list[SubtaskOut]
    timeline: list[MarkOut]
    """Subtask starts and ends in the order they happened."""

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls.model_validate(
            {
                **cls.fields_of(task),
                "subtasks": [SubtaskOut.of(s) for s in task.subtasks],
                "timeline": [
                    MarkOut(subtask_id=m.subtask_id, kind=m.kind, at=_at(m.at))
                    for m in task.timeline
                ],
            }
        )


@router.post("", status_code=202, summary="Create a task")
async def create_task(
    body: TaskCreate, response: Response, principal: _Execute, services: _Services
) -> TaskOut:
    """Store a new task and queue it; it is planned and run in the background. 404 for
    an unknown agent, 400 for an agent that is not a planned team."""
    check_message_size(body.input, services.settings)
    task = await services.tasks.submit(
        principal,
        body.input,
        agent_id=body.agent_id,
        priority=body.priority,
        timeout_s=body.timeout_s,
    )
    response.headers["Location"] = f"/api/tasks/{task.id}"
    return TaskOut.of(task)


@router.get("", summary="List tasks")
async def list_tasks(
    principal: _Read,
    services: _Services,
    status: StatusQuery = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[TaskSummaryOut]:
    """The tenant's tasks, newest first, optionally only those in one status."""
    page = await services.tasks.list(principal, status=status, limit=limit, cursor=cursor)
    return Page(items=[TaskSummaryOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/{task_id}", summary="Get a task")
async def get_task(task_id: IdPath, principal: _Read, services: _Services) -> TaskOut:
    """The task with its subtasks: status, category, specialist, result, error, timings."""
    task = await services.tasks.get(principal, task_id)
    if task is None:
        raise ApiError(404, "not_found", f"task {task_id!r} not found")
    return TaskOut.of(task)


@router.post("/{task_id}/cancel", summary="Cancel a task")
async def cancel_task(task_id: IdPath, principal: _Execute, services: _Services) -> TaskOut:
    """Stop the task (its running subtasks too) or withdraw it if queued; the task once
    it has stopped. A finished task is returned unchanged."""
    task = await services.tasks.cancel(principal, task_id)
    if task is None:
        raise ApiError(404, "not_found", f"task {task_id!r} not found")
    return TaskOut.of(task)


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else _at(epoch)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
