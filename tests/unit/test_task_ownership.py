"""Planned tasks across instances: each is owned by the instance that queued it, and only
a dead owner's tasks are recovered (running ones failed, pending ones taken over once).

The "instances" are task services with their own heartbeats on one database (the
heartbeat loops are kept idle with a long interval; sweeps are driven by the tests).
Written once as `TaskOwnershipContract`; SQLite runs it here, PostgreSQL in
tests/integration/test_store_postgres.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import update
from test_store_support import SqliteBackend, new_tenant

from agentguild.config import ScriptedModelConfig, Settings
from agentguild.llm.base import ChatChunk, ChatRequest, ChatResponse
from agentguild.runtime.agent_factory import AgentFactory
from agentguild.runtime.catalog import AgentCatalog
from agentguild.runtime.instances import InstanceHeartbeat
from agentguild.runtime.task_service import TaskService
from agentguild.security import Principal
from agentguild.store import Database
from agentguild.store.models import Instance, utcnow
from agentguild.tasks import PLANNER_PROMPT, Task
from agentguild.types import Message

IDLE = 3600.0  # heartbeat interval: the loop never beats during a test
WAIT_S = 10  # a safety net for waits that should end at once, not a timing assertion
SETTINGS = Settings(
    models={"m": ScriptedModelConfig(provider="scripted", replies=["unused"])}, default_model="m"
)


class Model:
    """One instance's model: no plan (a task is one subtask), then `done by <instance>`.
    The subtask of a task saying `hold` waits for `release`; `planned` lists the tasks
    this instance ran (planned), in order."""

    def __init__(self, instance: str) -> None:
        self.name = instance
        self.planned: list[str] = []
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        system, prompt = request.messages[0].text, request.messages[-1].text
        if system.startswith(PLANNER_PROMPT[:30]):
            self.planned.append(prompt)
            return ChatResponse(Message.assistant("no plan"))
        if "hold" in prompt:
            self.holding.set()
            await self.release.wait()
        return ChatResponse(Message.assistant(f"done by {self.name}"))

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError


@dataclass
class Node:
    """One server instance: its heartbeat, task service and model."""

    heartbeat: InstanceHeartbeat
    tasks: TaskService
    model: Model
    taken: list[int] = field(default_factory=list)
    """How many tasks each of its recoveries took over."""
    dead: bool = False


@dataclass
class Cluster:
    db: Database
    principal: Principal
    nodes: list[Node] = field(default_factory=list)

    async def node(self, name: str) -> Node:
        """A started instance (registered, and swept once, as a server starts)."""
        model = Model(name)
        factory = AgentFactory(SETTINGS, model_provider=lambda _name: model)
        heartbeat = InstanceHeartbeat(self.db, "server", interval_s=IDLE, stale_after_s=IDLE * 2)
        tasks = TaskService(
            self.db, AgentCatalog(self.db, factory), factory, max_running=1, instance=heartbeat
        )
        node = Node(heartbeat, tasks, model)
        heartbeat.on_sweep(_recording(node))
        self.nodes.append(node)
        await heartbeat.start()
        return node

    async def kill(self, node: Node) -> None:
        """The node's process dies: it stops beating, and its row ages."""
        assert node.heartbeat._loop is not None
        node.heartbeat._loop.cancel()
        node.dead = True
        async with self.db.session() as session:
            await session.execute(
                update(Instance)
                .where(Instance.id == node.heartbeat.id)
                .values(heartbeat_at=utcnow() - timedelta(seconds=IDLE * 3))
            )

    async def busy_with_one_holding_more(self, node: Node, queued: int) -> tuple[Task, list[Task]]:
        """`node` runs a held task in its only slot and has `queued` more waiting."""
        held = await node.tasks.submit(self.principal, "hold: the long one")
        await asyncio.wait_for(node.model.holding.wait(), WAIT_S)
        waiting = [
            await node.tasks.submit(self.principal, f"queued task {i}") for i in range(queued)
        ]
        return held, waiting

    async def stored(self, task: Task) -> Task:
        found = await self.nodes[0].tasks.get(self.principal, task.id)
        assert found is not None
        return found

    async def finished(self, task: Task) -> Task:
        """The task once every live instance that queued it is done with it."""
        tenant = self.principal.tenant_id
        for node in self.nodes:
            if node.dead:
                continue
            await asyncio.wait_for(node.tasks.manager.wait(task.id, tenant_id=tenant), WAIT_S)
        return await self.stored(task)


def _recording(node: Node) -> Callable[[], Awaitable[None]]:
    async def recover() -> None:
        node.taken.append(await node.tasks.recover())

    return recover


class TaskOwnershipContract:
    @pytest.fixture
    async def cluster(self, db: Database) -> AsyncIterator[Cluster]:
        cluster = Cluster(db, await new_tenant(db))
        yield cluster
        for node in cluster.nodes:
            node.model.release.set()
            await node.tasks.aclose()
            await node.heartbeat.aclose()

    async def test_a_starting_instance_leaves_a_live_instances_tasks_alone(
        self, cluster: Cluster
    ) -> None:
        first = await cluster.node("first")
        held, [waiting] = await cluster.busy_with_one_holding_more(first, queued=1)

        second = await cluster.node("second")
        # Returns at once unless `second` queued the task (then: once it has run it).
        seen_by_second = await asyncio.wait_for(
            second.tasks.manager.wait(waiting.id, tenant_id=cluster.principal.tenant_id), WAIT_S
        )
        still_held = await cluster.stored(held)

        assert second.taken == [0]
        assert seen_by_second is not None
        assert seen_by_second.status == "pending"
        assert still_held.status == "running"
        first.model.release.set()
        done = [await cluster.finished(task) for task in (held, waiting)]
        assert [(t.status, t.result) for t in done] == [("completed", "done by first")] * 2
        assert second.model.planned == []

    async def test_a_dead_instances_running_tasks_fail_and_its_pending_ones_run_once_elsewhere(
        self, cluster: Cluster
    ) -> None:
        first = await cluster.node("first")
        second = await cluster.node("second")
        third = await cluster.node("third")
        held, waiting = await cluster.busy_with_one_holding_more(first, queued=2)

        await cluster.kill(first)
        await second.heartbeat.sweep()
        await third.heartbeat.sweep()
        failed = await cluster.stored(held)
        ran = [await cluster.finished(task) for task in waiting]

        assert failed.status == "failed"
        assert "submit it again" in (failed.error or "")
        assert [s.status for s in failed.subtasks] == ["cancelled"]
        assert [(t.status, t.result) for t in ran] == [("completed", "done by second")] * 2
        assert (second.taken, third.taken) == ([0, 2], [0, 0])
        assert second.model.planned == [t.input for t in waiting]
        assert third.model.planned == []
        assert first.model.planned == [held.input]

    async def test_instances_recovering_at_once_take_each_task_once(self, cluster: Cluster) -> None:
        first = await cluster.node("first")
        second = await cluster.node("second")
        third = await cluster.node("third")
        held, waiting = await cluster.busy_with_one_holding_more(first, queued=4)

        await cluster.kill(first)
        await asyncio.gather(second.heartbeat.sweep(), third.heartbeat.sweep())
        ran = [await cluster.finished(task) for task in waiting]
        failed = await cluster.stored(held)

        assert failed.status == "failed"
        assert second.taken[-1] + third.taken[-1] == len(waiting)
        assert sorted(second.model.planned + third.model.planned) == sorted(
            t.input for t in waiting
        )
        for node in (second, third):
            assert len(node.model.planned) == node.taken[-1]
            mine = [t for t in ran if t.input in node.model.planned]
            done = ("completed", f"done by {node.model.name}")
            assert [(t.status, t.result) for t in mine] == [done] * len(mine)

    async def test_an_instance_thought_dead_that_wakes_up_writes_nothing_to_its_failed_task(
        self, cluster: Cluster, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Given a task whose subtask is held on `first`, which stalls (stops beating)
        # until `second` recovers the task
        first = await cluster.node("first")
        held, _ = await cluster.busy_with_one_holding_more(first, queued=0)
        second = await cluster.node("second")
        await cluster.kill(first)
        await second.heartbeat.sweep()
        recovered = await cluster.stored(held)
        # When `first` wakes up and its subtask ends
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            first.model.release.set()
            await asyncio.wait_for(
                first.tasks.manager.wait(held.id, tenant_id=cluster.principal.tenant_id), WAIT_S
            )
        # Then its saves were refused: the task stays as `second` left it, failed
        assert (await cluster.stored(held)).to_json() == recovered.to_json()
        assert (recovered.status, [s.status for s in recovered.subtasks]) == (
            "failed",
            ["cancelled"],
        )
        assert [(r.name, r.message) for r in caplog.records] == [
            ("agentguild.tasks.manager", "task.taken_over")
        ]


class TestTaskOwnershipOnSqlite(SqliteBackend, TaskOwnershipContract):
    pass
