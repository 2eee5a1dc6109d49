"""TaskService: the server's planned tasks — which team runs them, and recovery at start
(across instances: test_task_ownership.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentguild._platform_settings import DatabaseSettings
from agentguild.config import ScriptedModelConfig, Settings
from agentguild.llm.scripted import ScriptedModel
from agentguild.runtime.agent_factory import AgentFactory
from agentguild.runtime.catalog import AgentCatalog
from agentguild.runtime.task_service import NotPlannedError, TaskService
from agentguild.security import Principal, Role
from agentguild.store import Database, NotFoundError
from agentguild.tasks import Subtask, Task

SETTINGS = Settings(
    models={"m": ScriptedModelConfig(provider="scripted", replies=["hi"])}, default_model="m"
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}"))
    await database.start()
    yield database
    await database.close()


@pytest.fixture
async def principal(db: Database) -> Principal:
    async with db.system() as system:
        tenant = await system.create_tenant("acme")
    return Principal(tenant.id, Role.USER, user_id="usr_1")


def service(db: Database) -> TaskService:
    # Every model answers "done": plans fall back to one subtask, answered "done".
    factory = AgentFactory(
        SETTINGS, model_provider=lambda name: ScriptedModel(["done"], cycle=True, name=name)
    )
    return TaskService(db, AgentCatalog(db, factory), factory)


async def test_a_task_runs_on_the_planned_agent_it_names(
    db: Database, principal: Principal
) -> None:
    async with db.repos(principal) as repos:
        agent = await repos.agents.create("crew", "", {"kind": "planned"}, None)
    tasks = service(db)

    task = await tasks.submit(principal, "do it", agent_id="crew", priority=4)
    done = await asyncio.wait_for(tasks.manager.wait(task.id, tenant_id=principal.tenant_id), 30)

    assert task.id.startswith("task_")
    assert done is not None
    assert (done.status, done.result, done.agent_id, done.priority) == (
        "completed",
        "done",
        agent.id,
        4,
    )
    await tasks.aclose()


async def test_a_task_needs_an_existing_planned_agent(db: Database, principal: Principal) -> None:
    async with db.repos(principal) as repos:
        await repos.agents.create("helper", "", {"kind": "assistant"}, None)
    tasks = service(db)

    with pytest.raises(NotFoundError):
        await tasks.submit(principal, "x", agent_id="nobody")
    with pytest.raises(NotPlannedError, match="not a planned team"):
        await tasks.submit(principal, "x", agent_id="helper")
    assert (await tasks.list(principal)).items == []
    await tasks.aclose()


async def test_without_a_heartbeat_start_fails_other_processes_running_tasks_and_runs_pending(
    db: Database, principal: Principal
) -> None:
    # No heartbeat: no other process counts as live (a single-process server).
    tenant = principal.tenant_id
    crashed = Task("was running", tenant_id=tenant, status="running")
    crashed.subtasks = [Subtask("task", "was running", status="running")]
    waiting = Task("was queued", tenant_id=tenant)
    orphan = Task("its agent is gone", tenant_id=tenant, agent_id="agt_gone")
    earlier = service(db)
    for task in (crashed, waiting, orphan):
        await earlier.store.save(task)

    tasks = service(db)
    await tasks.start()
    ran = await asyncio.wait_for(tasks.manager.wait(waiting.id, tenant_id=tenant), 30)
    failed = await tasks.get(principal, crashed.id)
    lost = await tasks.get(principal, orphan.id)

    assert ran is not None
    assert (ran.status, ran.result) == ("completed", "done")
    assert failed is not None
    assert failed.status == "failed"
    assert "submit it again" in (failed.error or "")
    assert [s.status for s in failed.subtasks] == ["cancelled"]
    assert lost is not None
    assert (lost.status, lost.error) == ("failed", "agent 'agt_gone' not found")
    await tasks.aclose()
