"""The server's planned tasks: submitted over `/api/tasks`, run in this process, stored.

A task runs on a stored agent whose configuration is `kind: planned` (see
`PlannedTaskConfig`), or on the default team: a planner, research, code and analysis
specialists and a synthesiser, all on the server's default model. Tasks queue by priority
and up to `server.max_running_tasks` run at once in this process (`TaskManager`); every
status change of a task and its subtasks is stored as it happens (`SqlTaskStore`).

At start, tasks a dead process left `running` become `failed` (the error says to submit
them again: their subtasks may have had effects, and the task may be what brought the
process down), and `pending` tasks, which never started, are queued again. As with runs,
this assumes one process runs the database's tasks.
"""

from __future__ import annotations

import contextvars
import logging
import time
from contextvars import ContextVar

from ..errors import AgentguildError, ConfigError
from ..security import Principal, Role
from ..store.db import Database
from ..store.errors import NotFoundError
from ..store.ids import new_id
from ..store.task_store import SqlTaskStore
from ..store.usage_writer import UsageWriter
from ..store.views import Page
from ..tasks import PlannedTeam, Task, TaskManager
from ..types import Event, TaskStatus, UsageEvent
from .agent_factory import AgentFactory, bind_caller
from .catalog import AgentCatalog
from .limits import TenantLimits

__all__ = ["NotPlannedError", "TaskService"]

logger = logging.getLogger(__name__)

_SUBMITTER: ContextVar[Principal | None] = ContextVar("agentguild_task_submitter", default=None)


class NotPlannedError(AgentguildError):
    """A task names an agent that is not a planned team."""


class TaskService:
    """Creates, lists, reads and cancels the planned tasks of every tenant.

    A task's model calls are made on behalf of the caller who submitted it (caches, rate
    limits and usage records see their tenant and key or user), as runs' are.
    """

    def __init__(
        self,
        db: Database,
        catalog: AgentCatalog,
        factory: AgentFactory,
        *,
        usage_writer: UsageWriter | None = None,
        limits: TenantLimits | None = None,
        max_running: int = 2,
    ) -> None:
        self.store = SqlTaskStore(db)
        self.manager = TaskManager(
            store=self.store, max_running=max_running, on_event=self._on_event
        )
        self.catalog = catalog
        self.factory = factory
        self.usage_writer = usage_writer
        self.limits = limits
        self._default: PlannedTeam | None = None

    async def start(self) -> None:
        """Fail the tasks a dead process left running; queue the pending ones again."""
        failed = await self.store.fail_interrupted()
        if failed:
            logger.warning("tasks.interrupted", extra={"count": failed})
        for tenant_id, task_id in await self.store.pending():
            task = await self.store.get(task_id, tenant_id=tenant_id)
            if task is None or task.status != "pending":
                continue
            principal = Principal(tenant_id, Role.USER)
            try:
                team, _ = await self._team(principal, task.agent_id)
            except (NotFoundError, ConfigError, NotPlannedError) as exc:
                task.status, task.error, task.finished_at = "failed", str(exc), time.time()
                await self.store.save(task)
                continue
            await self.manager.enqueue(task, team=team, context=_context(principal))

    async def submit(
        self,
        principal: Principal,
        text: str,
        *,
        agent_id: str | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
    ) -> Task:
        """Store a new task and queue it; returns it (pending).

        `agent_id` is a planned agent's id or name (default: the default team). Raises
        `NotFoundError` (no such agent in the tenant), `NotPlannedError`, `ConfigError`
        (the agent cannot be built here) or `QuotaExceededError`.
        """
        if self.limits is not None:
            await self.limits.check_tokens(principal)
        team, stored_id = await self._team(principal, agent_id)
        task = Task(
            text,
            id=new_id("task"),
            priority=priority,
            timeout_s=timeout_s,
            tenant_id=principal.tenant_id,
            agent_id=stored_id,
        )
        return await self.manager.enqueue(task, team=team, context=_context(principal))

    async def get(self, principal: Principal, task_id: str) -> Task | None:
        """The task with its subtasks, or None if the tenant has no such task."""
        return await self.store.get(task_id, tenant_id=principal.tenant_id)

    async def list(
        self,
        principal: Principal,
        *,
        status: TaskStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Task]:
        """The tenant's tasks (without subtasks), newest first."""
        return await self.store.page(
            tenant_id=principal.tenant_id, status=status, limit=limit, cursor=cursor
        )

    async def cancel(self, principal: Principal, task_id: str) -> Task | None:
        """Stop the task (or withdraw it if queued) and wait until it has stopped; returns
        it (None if the tenant has no such task). A finished task is returned unchanged."""
        await self.manager.cancel(task_id, tenant_id=principal.tenant_id)
        return await self.manager.wait(task_id, tenant_id=principal.tenant_id)

    def default_team(self) -> PlannedTeam:
        """The team of tasks that name no agent (built on first use)."""
        if self._default is None:
            self._default = self.factory.planned_team()
        return self._default

    async def aclose(self) -> None:
        """Stop the running tasks (stored as cancelled); queued ones stay pending and run
        after the next start."""
        await self.manager.aclose()

    async def _team(
        self, principal: Principal, agent_id: str | None
    ) -> tuple[PlannedTeam, str | None]:
        """The team to run a task on, and the id of the stored agent it comes from."""
        if agent_id is None:
            return self.default_team(), None
        entry = await self.catalog.get(principal, agent_id) or await self.catalog.by_name(
            principal, agent_id
        )
        if entry is None:
            raise NotFoundError(f"agent {agent_id!r} not found")
        agent = entry.agent
        if not isinstance(agent, PlannedTeam):
            raise NotPlannedError(
                f"agent {entry.name!r} is not a planned team; tasks run on agents whose "
                "configuration has `kind: planned` (or on the default team: omit `agent_id`)"
            )
        return agent, entry.id

    def _on_event(self, task: Task, event: Event) -> None:
        # Called inside the task's run: its context holds the submitter.
        if isinstance(event, UsageEvent) and self.usage_writer is not None:
            principal = _SUBMITTER.get() or Principal(task.tenant_id, Role.USER)
            self.usage_writer.record(
                principal,
                model=event.model,
                prompt_tokens=event.usage.prompt_tokens,
                completion_tokens=event.usage.completion_tokens,
            )


def _context(principal: Principal) -> contextvars.Context:
    """A fresh context in which model calls are made on behalf of `principal`."""
    context = contextvars.Context()
    context.run(_bind, principal)
    return context


def _bind(principal: Principal) -> None:
    bind_caller(principal.tenant_id, principal.caller_id)
    _SUBMITTER.set(principal)
