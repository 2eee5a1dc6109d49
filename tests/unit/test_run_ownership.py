"""Runs across instances: owners, heartbeats, recovery of dead owners' runs, cancel requests.

Two "instances" here are two runners with their own heartbeats on one SQLite database
(the heartbeat loops are kept idle with a long interval; sweeps are driven by the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from test_runner import BlockingModel

from agentguild._platform_settings import DatabaseSettings
from agentguild.config import OpenAIModelConfig, Settings
from agentguild.llm.base import ChatChunk, ChatModel, ChatRequest, ChatResponse
from agentguild.llm.scripted import ScriptedModel
from agentguild.runtime.agent_factory import AgentFactory
from agentguild.runtime.cancels import LocalCancels
from agentguild.runtime.catalog import AgentCatalog
from agentguild.runtime.instances import InstanceHeartbeat
from agentguild.runtime.runner import Runner
from agentguild.security import Principal, Role
from agentguild.store import Database
from agentguild.store.models import Instance, utcnow
from agentguild.types import Message

IDLE = 3600.0  # heartbeat interval: the loop never beats during a test


@dataclass
class Node:
    runner: Runner
    heartbeat: InstanceHeartbeat


@dataclass
class Cluster:
    db: Database
    principal: Principal
    agent_id: str
    conversation_id: str
    cancels: LocalCancels
    """One channel for every node: what Redis Pub/Sub is between processes."""

    async def node(self, model: ChatModel) -> Node:
        settings = Settings(
            models={"m": OpenAIModelConfig(provider="openai", model="x")}, default_model="m"
        )
        factory = AgentFactory(settings, model_provider=lambda _name: model)
        heartbeat = InstanceHeartbeat(self.db, "server", interval_s=IDLE, stale_after_s=IDLE * 2)
        runner = Runner(
            self.db, AgentCatalog(self.db, factory), instance=heartbeat, cancels=self.cancels
        )
        heartbeat.on_sweep(runner.recover)
        await heartbeat.start()
        await runner.listen()
        return Node(runner, heartbeat)

    async def kill(self, node: Node) -> None:
        """The node's process dies: it stops beating and executing, and its row ages."""
        assert node.heartbeat._loop is not None
        node.heartbeat._loop.cancel()
        self.cancels._listeners.remove(node.runner.ownership._cancel_requested)
        async with self.db.session() as session:
            await session.execute(
                update(Instance)
                .where(Instance.id == node.heartbeat.id)
                .values(heartbeat_at=utcnow() - timedelta(seconds=IDLE * 3))
            )

    async def status(self, run_id: str) -> str:
        async with self.db.repos(self.principal) as repos:
            run = await repos.runs.get(run_id)
        assert run is not None
        return run.status


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/runs.db"))
    await db.start()
    async with db.system() as system:
        tenant = await system.create_tenant("acme")
    principal = Principal(tenant.id, Role.DEVELOPER, user_id=None)
    async with db.repos(principal) as repos:
        agent = await repos.agents.create("helper", "", {"model": "m", "tools": []}, None)
        conversation = await repos.conversations.create(None, agent.id, "t")
    try:
        yield Cluster(db, principal, agent.id, conversation.id, LocalCancels())
    finally:
        await db.close()


async def test_a_new_instance_leaves_the_live_instances_runs_alone(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        model = BlockingModel()
        a = await c.node(model)
        handle = await a.runner.start(c.principal, c.conversation_id, [Message.user("hi")])
        await model.called.wait()

        b = await c.node(ScriptedModel(["unused"]))  # its start sweeps and recovers
        await b.heartbeat.sweep()

        assert await c.status(handle.run_id) == "running"
        assert not handle.done
        for node in (a, b):
            await node.runner.aclose()
            await node.heartbeat.aclose()


async def test_a_dead_instances_runs_are_interrupted_by_a_live_ones_sweep(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        model = BlockingModel()
        a = await c.node(model)
        running = await a.runner.start(c.principal, c.conversation_id, [Message.user("one")])
        queued = await a.runner.start(c.principal, c.conversation_id, [Message.user("two")])
        await model.called.wait()
        b = await c.node(ScriptedModel(["unused"]))

        await c.kill(a)
        await b.heartbeat.sweep()

        assert await c.status(running.run_id) == "interrupted"
        assert await c.status(queued.run_id) == "interrupted"
        async with c.db.session() as session:
            ids = set((await session.scalars(select(Instance.id))).all())
        assert ids == {b.heartbeat.id}  # the dead row is gone
        await a.runner.aclose()
        await b.heartbeat.aclose()


class LateModel:
    """A model that answers only once `gate` is set: a process that stalled mid-call."""

    name = "late"

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.gate = asyncio.Event()
        self.inner = ScriptedModel(["a late answer"])

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.called.set()
        await self.gate.wait()
        return await self.inner.complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.called.set()
        await self.gate.wait()
        async for chunk in self.inner.stream(request):
            yield chunk


async def test_a_process_thought_dead_that_wakes_up_writes_nothing_to_its_recovered_run(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        # Given a run on A, whose heartbeats stop (A stalls) until B recovers the run
        model = LateModel()
        a = await c.node(model)
        handle = await a.runner.start(c.principal, c.conversation_id, [Message.user("hi")])
        await model.called.wait()
        b = await c.node(ScriptedModel(["unused"]))
        await c.kill(a)
        await b.heartbeat.sweep()
        # When A wakes up and its model answers
        model.gate.set()
        await handle.wait()
        # Then A stopped at its first write: the run stays interrupted, without A's answer
        assert (handle.status, await c.status(handle.run_id)) == ("interrupted", "interrupted")
        async with c.db.repos(c.principal) as repos:
            stored = await repos.messages.list(c.conversation_id)
        assert [m.role for m in stored.items] == ["user"]
        published = [event["type"] async for _, event in handle.log.follow()]
        assert "message" not in published
        assert "run_completed" not in published
        await b.heartbeat.aclose()


async def test_a_cancel_request_reaches_the_instance_executing_the_run(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        model = BlockingModel()
        a = await c.node(model)
        handle = await a.runner.start(
            c.principal, c.conversation_id, [Message.user("hi")], mode="background"
        )
        await model.called.wait()
        b = await c.node(ScriptedModel(["unused"]))

        run = await b.runner.cancel(c.principal, handle.run_id)

        assert run is not None
        assert run.status == "cancelled"
        assert model.cancelled.is_set()  # A stopped the model call
        assert handle.status == "cancelled"
        for node in (a, b):
            await node.heartbeat.aclose()


async def test_cancelling_a_run_whose_owner_is_dead_marks_it_at_once(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        model = BlockingModel()
        a = await c.node(model)
        handle = await a.runner.start(c.principal, c.conversation_id, [Message.user("hi")])
        await model.called.wait()
        b = await c.node(ScriptedModel(["unused"]))
        b.runner.ownership.instance = None  # no sweep on cancel: the cancel itself decides
        await c.kill(a)

        run = await b.runner.cancel(c.principal, handle.run_id)

        assert run is not None
        assert run.status == "cancelled"
        assert not model.cancelled.is_set()  # nobody asked the dead process
        await a.runner.aclose()
        await b.heartbeat.aclose()


async def test_an_instance_row_on_this_host_whose_process_is_gone_is_dead_at_once(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        pid = await asyncio.to_thread(_a_finished_process_pid)
        async with c.db.session() as session:
            session.add(
                Instance(
                    id=f"ghost:{pid}",
                    kind="server",
                    host=socket.gethostname(),
                    pid=pid,
                    started_at=utcnow(),
                    heartbeat_at=utcnow(),
                )
            )
        live = InstanceHeartbeat(c.db, "server", interval_s=IDLE, stale_after_s=IDLE * 2)

        await live.start()

        assert not await live.is_live(f"ghost:{pid}")
        assert [row.id for row in await live.live()] == [live.id]
        await live.aclose()


async def test_a_heartbeat_whose_row_was_removed_registers_again(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        live = InstanceHeartbeat(c.db, "worker", interval_s=IDLE, stale_after_s=IDLE * 2)
        await live.start()
        async with c.db.session() as session:
            await session.execute(Instance.__table__.delete())

        await live.beat()

        assert [row.id for row in await live.live("worker")] == [live.id]
        await live.aclose()
        assert await live.live() == []


def test_the_heartbeat_must_beat_more_often_than_it_goes_stale(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stale_after_s"):
        InstanceHeartbeat(
            Database(DatabaseSettings(url="sqlite+aiosqlite://")),
            "server",
            interval_s=10,
            stale_after_s=5,
        )


async def test_a_resumed_run_uses_the_agent_version_it_started_with(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        model = ScriptedModel(["done"])
        a = await c.node(model)
        async with c.db.repos(c.principal) as repos:
            run = await repos.runs.create(c.conversation_id, c.agent_id, 1, None, "background")
            await repos.messages.append(c.conversation_id, [Message.user("go")], run_id=run.id)
            await repos.agents.update(
                c.agent_id, config={"model": "m", "tools": [], "system_prompt": "NEW"}
            )

        handle = await a.runner.resume(c.principal, run.id)

        assert handle is not None
        await handle.wait()
        assert handle.status == "completed"
        assert [m.text for m in model.requests[0].messages] == ["go"]  # not version 2's prompt
        await a.heartbeat.aclose()


def _a_finished_process_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)
