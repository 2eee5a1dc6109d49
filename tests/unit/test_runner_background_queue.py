"""Background runs through a task queue: queued as `run.execute` jobs, run by a worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from agentguild._platform_settings import DatabaseSettings, QueueSettings
from agentguild.config import OpenAIModelConfig, Settings
from agentguild.llm.base import ChatModel
from agentguild.llm.scripted import ScriptedModel
from agentguild.runtime._background import run_job_key
from agentguild.runtime._run_jobs import register_run_jobs
from agentguild.runtime.agent_factory import AgentFactory
from agentguild.runtime.catalog import AgentCatalog
from agentguild.runtime.queue import InProcessQueue, JobRegistry
from agentguild.runtime.queue_metrics import queue_metrics
from agentguild.runtime.runner import Runner
from agentguild.security import Principal, Role
from agentguild.store import Database
from agentguild.types import Message


async def test_a_background_run_is_queued_and_completed_by_a_queue_worker(
    tmp_path: Path,
) -> None:
    # given a runner whose background runs go to a queue, and a worker for that queue
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/bg.db"))
    await db.start()
    model = ScriptedModel(["Done in the background."])
    settings = Settings(
        models={"m": OpenAIModelConfig(provider="openai", model="x")}, default_model="m"
    )
    provide: Callable[[str], ChatModel] = lambda _name: model  # noqa: E731
    catalog = AgentCatalog(db, AgentFactory(settings, model_provider=provide))
    queue = InProcessQueue(db, JobRegistry(), QueueSettings(concurrency=1))
    server = Runner(db, catalog, queue=queue)
    worker = Runner(db, catalog)
    register_run_jobs(queue.executor.registry, worker)
    async with db.system() as system:
        tenant = await system.create_tenant("acme")
    principal = Principal(tenant.id, Role.DEVELOPER)
    async with db.repos(principal) as repos:
        agent = await repos.agents.create("helper", "", {"model": "m"}, None)
        conversation = await repos.conversations.create(None, agent.id, "t")

    # when a background run starts (before the worker does)
    handle = await server.start(principal, conversation.id, [Message.user("go")], mode="background")
    assert server.live(principal, handle.run_id) is None  # not executed in this process
    job = await queue.store.by_key(run_job_key(handle.run_id))
    assert job is not None
    assert job.status == "queued"
    assert b'agentguild_queue_depth{queue="default"} 1.0' in await queue_metrics(queue)
    await queue.start()
    await queue.join()

    # then the worker ran it to completion
    run = await server.get(principal, handle.run_id)
    assert run is not None
    assert run.status == "completed"
    async with db.repos(principal) as repos:
        history = await repos.messages.history(conversation.id)
    assert [m.text for m in history] == ["go", "Done in the background."]
    view = await queue.status(job.id)
    assert view is not None
    assert view.completions == 1
    assert b'agentguild_queue_workers{queue="default"} 1.0' in await queue_metrics(queue)
    await queue.aclose()
    await asyncio.gather(server.aclose(), worker.aclose())
    await db.close()


async def test_with_a_queue_recovery_leaves_background_runs_to_the_workers(
    tmp_path: Path,
) -> None:
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/rec.db"))
    await db.start()
    settings = Settings(
        models={"m": OpenAIModelConfig(provider="openai", model="x")}, default_model="m"
    )
    catalog = AgentCatalog(db, AgentFactory(settings, model_provider=lambda _n: ScriptedModel([])))
    async with db.system() as system:
        tenant = await system.create_tenant("acme")
    principal = Principal(tenant.id, Role.DEVELOPER)
    async with db.repos(principal) as repos:
        agent = await repos.agents.create("helper", "", {"model": "m"}, None)
        conversation = await repos.conversations.create(None, agent.id, "t")
        background = await repos.runs.create(
            conversation.id, agent.id, 1, None, "background", "running"
        )
        streamed = await repos.runs.create(conversation.id, agent.id, 1, None, "stream", "running")
    queue = InProcessQueue(db, JobRegistry(), QueueSettings())

    assert await Runner(db, catalog, queue=queue).recover() == 1

    async with db.repos(principal) as repos:
        assert (await repos.runs.get(background.id)).status == "running"  # type: ignore[union-attr]
        assert (await repos.runs.get(streamed.id)).status == "interrupted"  # type: ignore[union-attr]
    await db.close()
