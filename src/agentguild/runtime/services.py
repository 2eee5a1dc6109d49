"""The long-lived objects the server shares between requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import Settings
from ..llm.stack import Gateway
from ..store.db import Database
from ..store.usage_writer import UsageWriter
from ..tools.base import Tool
from ._queue_setup import close_task_queue, start_task_queue, task_queue_from_settings
from .agent_factory import AgentFactory, ModelProvider
from .cancels import cancel_channel_from_settings
from .catalog import AgentCatalog
from .events import event_bus_from_settings
from .instances import InstanceHeartbeat
from .limits import RunLimits
from .queue import TaskQueue
from .runner import Runner
from .task_service import TaskService


@dataclass(slots=True)
class Services:
    """Settings, database, agents and runner of one server process.

    ```python
    services = await Services.start(settings)   # in the app's lifespan
    ...
    await services.aclose()
    ```
    """

    settings: Settings
    db: Database
    factory: AgentFactory
    """Builds agents from stored configurations (models, tools); validates configurations."""
    catalog: AgentCatalog
    """Each tenant's agents, cached; call `catalog.invalidate(tenant_id)` after changes."""
    runner: Runner
    usage_writer: UsageWriter
    """Batched usage records (the `/v1` path and runs record usage through it)."""
    tasks: TaskService
    """Planned tasks (`/api/tasks`): stored, and run in this process by priority (with
    Celery: on the queue workers)."""
    gateway: Gateway | None = None
    """The configured models' gateway stacks (cache, routing, retries, limits, metering);
    None when the models come from a custom `model_provider`."""
    queue: TaskQueue | None = None
    """Background jobs (`settings.queue`): in-process, or Celery workers; with Celery,
    background runs and planned tasks go to the workers."""
    instance: InstanceHeartbeat | None = None
    """This process in the `instances` table (its heartbeat recovers dead processes' runs
    and tasks)."""

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        db: Database | None = None,
        model_provider: ModelProvider | None = None,
        tools: Mapping[str, Tool] | None = None,
        limits: RunLimits | None = None,
    ) -> Services:
        """Connect the database (migrating it if configured), build the agent catalog, the
        runner and the task service, and register this process (`instance`). Its heartbeat
        recovers what dead processes left, at once and on every beat: their runs become
        `interrupted`, their running tasks `failed`, and their pending tasks are taken
        over and queued here (see `TaskService.recover`); with Celery, background runs and
        tasks are left to the queue workers, which resume them.

        `model_provider` builds models by name (default: the configured models, each in
        its gateway stack: see `agentguild.llm.stack`);
        `tools` are the tools agent configurations may name (default: the built-in ones);
        `limits` are the default per-tenant limits (a tenant's settings may override them).
        """
        db = db or Database(settings.database)
        await db.start()
        usage_writer = UsageWriter(db)
        await usage_writer.start()
        gateway = None
        if model_provider is None:
            gateway = Gateway(settings)
            model_provider = gateway.model
        factory = AgentFactory(settings, tools=tools, model_provider=model_provider)
        catalog = AgentCatalog(db, factory)
        events = event_bus_from_settings(settings.server)
        queue = task_queue_from_settings(settings, db)
        instance = InstanceHeartbeat(
            db,
            "server",
            interval_s=settings.server.heartbeat_interval_s,
            stale_after_s=settings.server.instance_stale_after_s,
        )
        runner = Runner(
            db,
            catalog,
            usage_writer=usage_writer,
            limits=limits,
            events=events,
            queue=queue if settings.queue.backend == "celery" else None,
            instance=instance,
            cancels=cancel_channel_from_settings(settings.server),
        )
        instance.on_sweep(runner.recover)
        tasks = TaskService(
            db,
            catalog,
            factory,
            usage_writer=usage_writer,
            limits=runner.limits,
            max_running=settings.server.max_running_tasks,
            instance=instance,
            queue=queue if settings.queue.backend == "celery" else None,
            cancels=runner.cancels,
        )
        instance.on_sweep(tasks.recover)
        await instance.start()  # registers, then recovers what dead processes left
        await runner.listen()
        await tasks.listen()
        await start_task_queue(queue, runner)
        return cls(
            settings, db, factory, catalog, runner, usage_writer, tasks, gateway, queue, instance
        )

    async def aclose(self) -> None:
        """Stop active runs (marked `interrupted`) and tasks (cancelled), write pending
        usage, close models and the database."""
        await self.tasks.aclose()
        if self.queue is not None:
            await close_task_queue(self.queue)
        await self.runner.aclose()
        if self.instance is not None:
            await self.instance.aclose()
        await self.runner.cancels.aclose()
        await self.runner.events.aclose()
        await self.usage_writer.close()
        await self.factory.aclose()
        if self.gateway is not None:
            await self.gateway.aclose()
        await self.db.close()
