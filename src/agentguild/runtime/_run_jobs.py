"""Background runs as queue jobs: `run.execute` runs (or resumes) one stored run.

A worker executes the job with `Runner.resume`, which continues the run from its last
persisted step, so a run whose worker died is finished by the worker the broker gives its
job to next, without repeating completed tool calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..llm.stack import Gateway
from ..security import Principal, Role
from ..store.db import Database
from ..tools.base import Tool
from ._background import RUN_JOB
from ._job_executor import JobContext, JobInterruptedError, JobRegistry
from .agent_factory import AgentFactory
from .catalog import AgentCatalog
from .events import event_bus_from_settings
from .runner import Runner


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
    """The jobs an `agentguild worker` runs by default: background runs, on the configured
    models (in their gateway stacks) and `tools` (default: the built-in ones)."""
    gateway = Gateway(settings)
    factory = AgentFactory(settings, tools=tools, model_provider=gateway.model)
    events = event_bus_from_settings(settings.server)
    runner = Runner(db, AgentCatalog(db, factory), events=events)
    registry = register_run_jobs(JobRegistry(), runner)
    registry.on_shutdown(events.aclose)
    registry.on_shutdown(factory.aclose)
    registry.on_shutdown(gateway.aclose)
    return registry
