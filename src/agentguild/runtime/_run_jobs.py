"""Background runs as queue jobs: `run.execute` runs (or resumes) one stored run.

A worker executes the job with `Runner.resume`, which continues the run from its last
persisted step, so a run whose worker died is finished by the worker the broker gives its
job to next, without repeating completed tool calls. `platform_jobs` also runs planned
tasks (`task.execute`, see `_task_jobs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..llm.stack import Gateway
from ..security import Principal, Role
from ..store.db import Database
from ..store.usage_writer import UsageWriter
from ..tools.base import Tool
from ._background import RUN_JOB
from ._job_executor import JobContext, JobInterruptedError, JobRegistry
from ._task_jobs import register_task_jobs
from .agent_factory import AgentFactory
from .cancels import cancel_channel_from_settings
from .catalog import AgentCatalog
from .events import event_bus_from_settings
from .instances import InstanceHeartbeat
from .runner import Runner
from .task_service import TaskService


class RunInterruptedError(JobInterruptedError):
    """The run stopped because its worker is shutting down: the job is delivered again."""


def register_run_jobs(registry: JobRegistry, runner: Runner) -> JobRegistry:
    """Add `run.execute`, executed by `runner`, to `registry`; returns it."""

    @registry.handler(RUN_JOB)
    async def execute_run(ctx: JobContext) -> dict[str, Any]:
        payload = ctx.payload
        principal = Principal(
            str(payload["tenant_id"]),
            Role(str(payload["role"])),
            user_id=None if payload.get("user_id") is None else str(payload["user_id"]),
        )
        handle = await runner.resume(principal, str(payload["run_id"]))
        if handle is None:  # finished by an earlier delivery
            return {"status": "finished"}
        await handle.wait()
        if handle.status == "interrupted":
            raise RunInterruptedError(f"run {handle.run_id} was interrupted by a shutdown")
        return {"status": handle.status}

    registry.on_shutdown(runner.aclose)
    return registry


async def platform_jobs(
    settings: Settings, db: Database, tools: Mapping[str, Tool] | None = None
) -> JobRegistry:
    """The jobs an `agentguild worker` runs by default: background runs and planned tasks,
    on the configured models (in their gateway stacks) and `tools` (default: the built-in
    ones).

    The worker registers in `instances` (so the runs and tasks it executes count as owned
    by a live process) and takes cancel requests from every instance. The model usage of
    runs and tasks is recorded for their submitters, as on the server."""
    gateway = Gateway(settings)
    factory = AgentFactory(settings, tools=tools, model_provider=gateway.model)
    events = event_bus_from_settings(settings.server)
    instance = InstanceHeartbeat(
        db,
        "worker",
        interval_s=settings.server.heartbeat_interval_s,
        stale_after_s=settings.server.instance_stale_after_s,
    )
    cancels = cancel_channel_from_settings(settings.server)
    catalog = AgentCatalog(db, factory)
    usage_writer = UsageWriter(db)
    await usage_writer.start()
    runner = Runner(
        db,
        catalog,
        usage_writer=usage_writer,
        events=events,
        instance=instance,
        cancels=cancels,
    )
    tasks = TaskService(
        db, catalog, factory, usage_writer=usage_writer, instance=instance, cancels=cancels
    )
    await instance.start()
    await runner.listen()
    await tasks.listen()
    registry = register_run_jobs(JobRegistry(), runner)
    register_task_jobs(registry, tasks)
    registry.on_shutdown(instance.aclose)
    registry.on_shutdown(cancels.aclose)
    registry.on_shutdown(events.aclose)
    registry.on_shutdown(usage_writer.close)
    registry.on_shutdown(factory.aclose)
    registry.on_shutdown(gateway.aclose)
    return registry
