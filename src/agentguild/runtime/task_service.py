"""The server's planned tasks: submitted over `/api/tasks`, run, stored.

A task runs on a stored agent whose configuration is `kind: planned` (see
`PlannedTaskConfig`), or on the default team: a planner, research, code and analysis
specialists and a synthesiser, all on the server's default model. Every status change of
a task and its subtasks is stored as it happens (`SqlTaskStore`).

Where tasks run:

- In this process (no `queue`): tasks queue by priority and up to
  `server.max_running_tasks` run at once (`TaskManager`). Each task is owned by the
  process that queued it (`tasks.owner`: this process's `InstanceHeartbeat` id), and
  starts only if it still is (a compare-and-set from pending to running). `recover`,
  which runs on every heartbeat sweep, handles the tasks of processes that died: tasks
  they left `running` become `failed` (the error says to submit them again: their
  subtasks may have had effects, and the task may be what brought the process down), and
  their `pending` tasks, which never started, are taken over and queued here.
- On queue workers (a `queue`: `queue.backend: celery`): a task is stored and queued as a
  `task.execute` job (`_task_jobs`); a worker claims it and runs it (`execute`). A task
  whose worker died is taken over by the worker its job is delivered to next, and
  resumed from its plan (completed subtasks are not run again). `recover` leaves tasks
  that have a job to the queue.

`cancel` stops a task wherever it runs: in this process directly, elsewhere over the
cancel channel (`listen` takes the requests of the other instances); a task no live
process runs is marked `cancelled` at once.
"""

from __future__ import annotations

import contextvars
import logging
import time
from contextvars import ContextVar

from sqlalchemy import Select

from ..errors import AgentguildError, ConfigError
from ..security import Principal, Role
from ..store.db import Database
from ..store.errors import NotFoundError, NotTaskOwnerError
from ..store.ids import new_id
from ..store.task_store import SqlTaskStore
from ..store.usage_writer import UsageWriter
from ..store.views import Page
from ..tasks import PlannedTeam, Task, TaskManager
from ..types import Event, TaskStatus, UsageEvent
from ._task_cancels import cancel_elsewhere
from ._task_jobs import TASK_JOB, TASK_QUEUE, task_job_key, task_job_payload, task_job_priority
from ._task_worker import QueuedTaskRuns
from .agent_factory import AgentFactory, bind_caller
from .cancels import CancelChannel, LocalCancels
from .catalog import AgentCatalog
from .instances import InstanceHeartbeat, live_instance_ids, new_instance_id
from .limits import TenantLimits
from .queue import TaskQueue

__all__ = ["NotPlannedError", "TaskService"]

logger = logging.getLogger(__name__)

_SUBMITTER: ContextVar[Principal | None] = ContextVar("agentguild_task_submitter", default=None)


class NotPlannedError(AgentguildError):
    """A task names an agent that is not a planned team."""


class TaskService:
    """Creates, lists, reads and cancels the planned tasks of every tenant.

    A task's model calls are made on behalf of the caller who submitted it (caches, rate
    limits and usage records see their tenant and key or user), as runs' are.

    With an `instance` (this process's heartbeat), the tasks it submits are owned by
    `instance.id`, and other live instances' tasks are left to them: register `recover`
    with `instance.on_sweep`. Without one, the service has an id of its own and no other
    process counts as live: `start()` takes over every other task in the database.

    With a `queue`, submitted tasks go to queue workers (`task.execute` jobs), which run
    them with `execute`. `cancels` carries cancel requests between instances (default:
    within this process); call `listen` once at start. A task running elsewhere that
    does not stop within `cancel_wait_s` of a cancel request is returned as it is.
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
        instance: InstanceHeartbeat | None = None,
        queue: TaskQueue | None = None,
        cancels: CancelChannel | None = None,
        cancel_wait_s: float = 10.0,
    ) -> None:
        self.instance = instance
        """This process's heartbeat (which instances are live); None: no other process is."""
        self.owner = instance.id if instance is not None else new_instance_id()
        """The id the tasks queued here are owned by."""
        self.store = SqlTaskStore(db, owner=self.owner)
        self.manager = TaskManager(
            store=self.store,
            max_running=max_running,
            on_event=self._on_event,
            claim=self.store.start,
        )
        """Runs the tasks of this process (no `queue`)."""
        self.queue = queue
        """Where submitted tasks go (queue workers run them); None: this process runs them."""
        self.worker = QueuedTaskRuns(self.store, self._live_owners, self._on_event)
        """The tasks this process runs for queue jobs (`execute`)."""
        self.cancels: CancelChannel = cancels if cancels is not None else LocalCancels()
        self.cancel_wait_s = cancel_wait_s
        self.catalog = catalog
        self.factory = factory
        self.usage_writer = usage_writer
        self.limits = limits
        self._default: PlannedTeam | None = None
        self._closed = False

    async def start(self) -> None:
        """Recover once (see `recover`): for a service without a heartbeat, or whose
        heartbeat does not call `recover` on its sweeps."""
        await self.recover()

    async def recover(self) -> int:
        """Handle the tasks of processes that died; how many pending tasks were taken over.

        Tasks no live process owns (owner none, or not a live instance) that are `running`
        become `failed`, their unfinished subtasks `cancelled`; those `pending` are taken
        over (owned by this process: of several instances recovering at once, one takes
        each) and queued here (to the queue, with one). Tasks of live instances are left
        alone, and so are those that have a queue job when this service has a queue (their
        workers own them). Every instance calls it on each heartbeat sweep.
        """
        skip = self.queue is not None
        failed = await self.store.fail_orphaned(self.owner, self._live_owners(), skip_queued=skip)
        if failed:
            logger.warning("tasks.interrupted", extra={"count": failed})
        taken: list[tuple[str, str]] = []
        if not self._closed:  # a closed service could not run what it took over
            taken = await self.store.take_orphaned(
                self.owner, self._live_owners(), skip_queued=skip
            )
        if taken:
            logger.warning("tasks.taken_over", extra={"count": len(taken)})
        queued = 0
        try:
            for tenant_id, task_id in taken:
                if self._closed:
                    break
                try:
                    await self._queue_stored(tenant_id, task_id)
                except NotTaskOwnerError:  # thought dead meanwhile: another process has it
                    logger.warning("task.taken_over", extra={"task_id": task_id})
                queued += 1
        finally:
            # Tasks not queued here (this service closed meanwhile, or an error) must not
            # stay owned by a live instance that will never run them.
            await self.store.release([task_id for _, task_id in taken[queued:]], self.owner)
        return queued

    async def submit(
        self,
        principal: Principal,
        text: str,
        *,
        agent_id: str | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
    ) -> Task:
        """Store a new task and queue it (here, or as a `task.execute` job for queue
        workers); returns it (pending).

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
        if self.queue is not None:
            return await self._send(principal, task)
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
        it (None if the tenant has no such task). A finished task is returned unchanged.

        A task running in another process (an instance, a queue worker) is sent a cancel
        request; if it has not stopped within `cancel_wait_s`, it is returned as it is. A
        task not started yet, or that no live process runs, is marked `cancelled` at once.
        """
        tenant = principal.tenant_id
        if self.manager.holds(task_id, tenant_id=tenant):
            try:
                await self.manager.cancel(task_id, tenant_id=tenant)
            except NotTaskOwnerError:  # queued here, but another process took it over
                logger.warning("task.taken_over", extra={"task_id": task_id})
            else:
                return await self.manager.wait(task_id, tenant_id=tenant)
        task = await self.store.get(task_id, tenant_id=tenant)
        if task is None or task.finished:
            return task
        if self.worker.stop(task_id):
            await self.worker.wait(task_id)
            return await self.store.get(task_id, tenant_id=tenant)
        return await cancel_elsewhere(
            self.store,
            task,
            cancels=self.cancels,
            live_owners=self._live_owners,
            instance=self.instance,
            wait_s=self.cancel_wait_s,
        )

    async def execute(self, principal: Principal, task_id: str) -> TaskStatus | None:
        """Run a queued task in this process until it ends (a queue worker's
        `task.execute`, on behalf of `principal`, its submitter); its final status, or
        None if it had finished before (or does not exist): nothing was done.

        The task is claimed first: a pending task, or one whose process died, which is
        resumed from its plan (its completed subtasks are not run again). One still
        running on a live process is waited for. Raises `TaskInterruptedError` if this
        service is closed meanwhile (the task is stored pending again), or if another
        process took the task over (this one was thought dead: nothing more is stored).
        """
        task = await self.worker.claim(principal.tenant_id, task_id)
        if task is None:
            return None
        try:
            team, _ = await self._team(principal, task.agent_id)
        except (NotFoundError, ConfigError, NotPlannedError) as exc:
            return await self.worker.fail(task, str(exc))
        return await self.worker.run(task, team, _context(principal))

    async def listen(self) -> None:
        """Take cancel requests for the tasks running here from every instance (call it
        once, at start)."""
        await self.cancels.listen(self._cancel_requested)

    def default_team(self) -> PlannedTeam:
        """The team of tasks that name no agent (built on first use)."""
        if self._default is None:
            self._default = self.factory.planned_team()
        return self._default

    async def aclose(self) -> None:
        """Stop the running tasks (stored as cancelled); queued ones stay pending, and a
        live instance takes them over once this process's heartbeat has stopped. Tasks
        run for queue jobs are stopped unfinished and stored pending again: their jobs
        are delivered again (see `execute`)."""
        self._closed = True
        await self.worker.interrupt()
        await self.manager.aclose()

    async def _send(self, principal: Principal, task: Task) -> Task:
        """Store a pending task and queue its `task.execute` job. The task stays owned by
        this process until a worker claims it, so no recovery takes it meanwhile."""
        assert self.queue is not None
        task.status = "pending"
        await self.store.save(task)
        try:
            await self.queue.enqueue(
                TASK_JOB,
                task_job_payload(principal, task.id),
                queue=TASK_QUEUE,
                priority=task_job_priority(task.priority),
                idempotency_key=task_job_key(task.id),
                tenant_id=task.tenant_id,
            )
        except Exception as exc:
            task.status, task.finished_at = "failed", time.time()
            task.error = f"the task could not be queued: {exc}"
            try:
                await self.store.save(task)
            except NotTaskOwnerError:  # queued after all, and taken (or cancelled): leave it
                logger.warning("task.taken_over", extra={"task_id": task.id})
            raise
        return task

    async def _queue_stored(self, tenant_id: str, task_id: str) -> None:
        """Queue a stored pending task (failing it if its agent cannot be built here)."""
        task = await self.store.get(task_id, tenant_id=tenant_id)
        if task is None or task.status != "pending":
            return
        principal = Principal(tenant_id, Role.USER)
        try:
            team, _ = await self._team(principal, task.agent_id)
        except (NotFoundError, ConfigError, NotPlannedError) as exc:
            task.status, task.error, task.finished_at = "failed", str(exc), time.time()
            await self.store.save(task)
            return
        if self.queue is not None:
            await self._send(principal, task)
            return
        await self.manager.enqueue(task, team=team, context=_context(principal))

    def _live_owners(self) -> Select[str] | None:
        """The ids of the live instances, as a subquery (None: no other process is live)."""
        if self.instance is None:
            return None
        return live_instance_ids(self.instance.stale_after_s)

    async def _team(
        self, principal: Principal, agent_id: str | None
    ) -> tuple[PlannedTeam, str | None]:
        """The team to run a task on, and the id of the stored agent it comes from."""
        if agent_id is None:
            return self.default_team(), None
        entry = await self.catalog.resolve(principal, agent_id)
        if entry is None:
            raise NotFoundError(f"agent {agent_id!r} not found")
        agent = entry.agent
        if not isinstance(agent, PlannedTeam):
            raise NotPlannedError(
                f"agent {entry.name!r} is not a planned team; tasks run on agents whose "
                "configuration has `kind: planned` (or on the default team: omit `agent_id`)"
            )
        return agent, entry.id

    def _cancel_requested(self, task_id: str) -> None:
        self.manager.stop(task_id)
        self.worker.stop(task_id)

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
