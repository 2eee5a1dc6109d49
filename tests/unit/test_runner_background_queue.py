"""Background runs through a task queue: queued as `run.execute` jobs, run by a worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

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
from agentguild.runtime.runner import RunLimitError, RunLimits, Runner
from agentguild.security import Principal, Role
from agentguild.store import Database
from agentguild.types import Message


@dataclass
class World:
    db: Database
    catalog: AgentCatalog
    principal: Principal
    agent_id: str
    conversation_id: str


@contextlib.asynccontextmanager
async def world(tmp_path: Path, model: ChatModel) -> AsyncIterator[World]:
    """A SQLite database with a tenant, an agent on `model` and one conversation."""
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/bg.db"))
    await db.start()
    settings = Settings(
        models={"m": OpenAIModelConfig(provider="openai", model="x")}, default_model="m"
    )
    provide: Callable[[str], ChatModel] = lambda _name: model  # noqa: E731
    catalog = AgentCatalog(db, AgentFactory(settings, model_provider=provide))
    async with db.system() as system:
        tenant = await system.create_tenant("acme")
    principal = Principal(tenant.id, Role.DEVELOPER)
    async with db.repos(principal) as repos:
        agent = await repos.agents.create("helper", "", {"model": "m"}, None)
        conversation = await repos.conversations.create(None, agent.id, "t")
    try:
        yield World(db, catalog, principal, agent.id, conversation.id)
    finally:
        await db.close()


async def test_a_background_run_is_queued_and_completed_by_a_queue_worker(
    tmp_path: Path,
) -> None:
    # given a runner whose background runs go to a queue, and a worker for that queue
    model = ScriptedModel(["Done in the background."])
    async with world(tmp_path, model) as w:
        db, catalog, principal = w.db, w.catalog, w.principal
        queue = InProcessQueue(db, JobRegistry(), QueueSettings(concurrency=1))
        server = Runner(db, catalog, queue=queue)
        worker = Runner(db, catalog)
        register_run_jobs(queue.executor.registry, worker)

        # when a background run starts (before the worker does)
        handle = await server.start(
            principal, w.conversation_id, [Message.user("go")], mode="background"
        )
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
            history = await repos.messages.history(w.conversation_id)
        assert [m.text for m in history] == ["go", "Done in the background."]
        view = await queue.status(job.id)
        assert view is not None
        assert view.completions == 1
        assert b'agentguild_queue_workers{queue="default"} 1.0' in await queue_metrics(queue)
        await queue.aclose()
        await asyncio.gather(server.aclose(), worker.aclose())


async def test_with_a_queue_recovery_leaves_background_runs_to_the_workers(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, ScriptedModel([])) as w:
        async with w.db.repos(w.principal) as repos:
            background = await repos.runs.create(
                w.conversation_id, w.agent_id, 1, None, "background", "running"
            )
            streamed = await repos.runs.create(
                w.conversation_id, w.agent_id, 1, None, "stream", "running"
            )
        queue = InProcessQueue(w.db, JobRegistry(), QueueSettings())

        assert await Runner(w.db, w.catalog, queue=queue).recover() == 1

        async with w.db.repos(w.principal) as repos:
            assert (await repos.runs.get(background.id)).status == "running"  # type: ignore[union-attr]
            assert (await repos.runs.get(streamed.id)).status == "interrupted"  # type: ignore[union-attr]


async def test_background_runs_waiting_for_a_worker_count_against_the_tenants_run_limit(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, ScriptedModel(["ok"], cycle=True)) as w:
        queue = InProcessQueue(w.db, JobRegistry(), QueueSettings(concurrency=1))  # not started
        server = Runner(w.db, w.catalog, queue=queue, limits=RunLimits(max_active_runs=2))
        async with w.db.repos(w.principal) as repos:
            second = await repos.conversations.create(None, w.agent_id, "b")
        for conversation_id in (w.conversation_id, second.id):
            go = [Message.user("go")]
            await server.start(w.principal, conversation_id, go, mode="background")

        more = [Message.user("more")]
        with pytest.raises(RunLimitError, match="limit 2"):
            await server.start(w.principal, w.conversation_id, more, mode="background")
        await server.aclose()


async def test_a_run_waiting_its_turn_when_its_worker_stops_keeps_its_input_for_the_next(
    tmp_path: Path,
) -> None:
    # given a worker runner executing a background run that waits behind an active run
    async with world(tmp_path, ScriptedModel(["second answer"])) as w:
        async with w.db.repos(w.principal) as repos:
            ahead = await repos.runs.create(
                w.conversation_id, w.agent_id, 1, None, "wait", "running"
            )
            first = [Message.user("first")]
            await repos.messages.append(w.conversation_id, first, run_id=ahead.id)
            waiting = await repos.runs.create(
                w.conversation_id,
                w.agent_id,
                1,
                None,
                "background",
                pending_input=[{"role": "user", "content": "second"}],
            )
        first_worker = Runner(w.db, w.catalog)
        handle = await first_worker.resume(w.principal, waiting.id)
        assert handle is not None

        # when that worker shuts down before the run's turn came, and the run ahead then ends
        await first_worker.aclose()
        async with w.db.repos(w.principal) as repos:
            stopped = await repos.runs.get(waiting.id)
            await repos.runs.set_status(ahead.id, "completed")
        assert stopped is not None
        assert stopped.status == "interrupted"

        # then the next worker's resume adds its input when its turn comes, and answers it
        next_worker = Runner(w.db, w.catalog)
        resumed = await next_worker.resume(w.principal, waiting.id)
        assert resumed is not None
        await resumed.wait()
        async with w.db.repos(w.principal) as repos:
            history = await repos.messages.history(w.conversation_id)
        assert resumed.status == "completed"
        assert [m.text for m in history] == ["first", "second", "second answer"]
        await next_worker.aclose()
